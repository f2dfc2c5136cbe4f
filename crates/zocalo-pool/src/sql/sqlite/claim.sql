-- Claim up to $5 ready jobs for node $2, highest priority first, then oldest. Runs inside a
-- BEGIN IMMEDIATE transaction, so concurrent claimers (other processes) queue on the write lock
-- and each sees the others' claims. $3: JSON array of kinds this node runs; $4: its labels.
UPDATE pool_jobs
SET state = 'running', attempts = attempts + 1, lease_owner = $2, started_at = $1,
    lease_expires = $1 + timeout_ms
WHERE id IN (
    -- INDEXED BY: read the ready index in claim order and stop after the batch, whatever the
    -- planner's statistics say.
    SELECT id FROM pool_jobs INDEXED BY pool_jobs_ready
    WHERE state = 'queued' AND run_at <= $1
      AND kind IN (SELECT value FROM json_each($3))
      AND NOT EXISTS (SELECT 1 FROM json_each(pool_jobs.labels) AS l
                      WHERE l.value NOT IN (SELECT value FROM json_each($4)))
    ORDER BY priority DESC, run_at, id
    LIMIT $5
)
RETURNING id, kind, payload, priority, attempts, max_attempts, timeout_ms
