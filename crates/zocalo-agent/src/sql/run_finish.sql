-- How one agent ended; a job id set when it was queued (on the pool) is kept.
UPDATE agent_runs
SET status = $3, error_kind = $4, error = $5, output = $6, conversation_id = $7,
    job_id = COALESCE($8, job_id), elapsed_ms = $9, finished_at = $10
WHERE batch_id = $1 AND seq = $2
