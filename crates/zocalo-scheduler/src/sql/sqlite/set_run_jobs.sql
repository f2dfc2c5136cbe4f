-- Records the enqueued jobs ($1: [{"id","job_id"}]) on their run rows.
UPDATE sched_runs
SET job_id = json_extract(b.value, '$.job_id')
FROM json_each($1) AS b
WHERE sched_runs.id = json_extract(b.value, '$.id')
