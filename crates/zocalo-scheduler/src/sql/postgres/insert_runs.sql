-- The run rows ($1: [{"id","automation_id","occurrence"}]): the exactly-once record, unique on
-- (automation, occurrence). The ids returned are the ones inserted, whose jobs to enqueue.
INSERT INTO sched_runs (id, automation_id, occurrence, job_id, created_at)
SELECT r.id, r.automation_id, r.occurrence, NULL, $2
FROM jsonb_to_recordset($1::jsonb) AS r(id text, automation_id text, occurrence bigint)
ON CONFLICT (automation_id, occurrence) DO NOTHING
RETURNING id
