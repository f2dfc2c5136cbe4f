-- The run row is the exactly-once record: unique on (automation, occurrence).
INSERT INTO sched_runs (id, automation_id, occurrence, job_id, created_at)
VALUES ($1, $2, $3, NULL, $4)
ON CONFLICT (automation_id, occurrence) DO NOTHING
