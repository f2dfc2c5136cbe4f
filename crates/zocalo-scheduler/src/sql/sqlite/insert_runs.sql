-- The run rows ($1: [{"id","automation_id","occurrence"}]): the exactly-once record, unique on
-- (automation, occurrence). The ids returned are the ones inserted, whose jobs to enqueue.
INSERT INTO sched_runs (id, automation_id, occurrence, job_id, created_at)
SELECT json_extract(value, '$.id'), json_extract(value, '$.automation_id'),
       json_extract(value, '$.occurrence'), NULL, $2
FROM json_each($1)
WHERE true
ON CONFLICT (automation_id, occurrence) DO NOTHING
RETURNING id
