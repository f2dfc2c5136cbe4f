-- Records the enqueued jobs ($1: [{"id","job_id"}]) on their run rows.
UPDATE sched_runs AS r
SET job_id = b.job_id
FROM jsonb_to_recordset($1::jsonb) AS b(id text, job_id text)
WHERE r.id = b.id
