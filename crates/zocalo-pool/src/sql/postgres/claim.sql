-- Claim up to $5 ready jobs for node $2, highest priority first, then oldest. SKIP LOCKED lets
-- concurrent claimers (any machine) pass over rows another transaction is claiming, so none is
-- claimed twice and nobody waits. $3: the kinds this node runs (text[]); $4: its labels (a
-- JSON array, only read for a job that has labels).
WITH picked AS (
    SELECT id FROM pool_jobs
    WHERE state = 'queued' AND run_at <= $1
      AND kind = ANY($3::text[])
      AND (labels = '[]' OR labels::jsonb <@ $4::jsonb)
    ORDER BY priority DESC, run_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE pool_jobs AS j
SET state = 'running', attempts = j.attempts + 1, lease_owner = $2, started_at = $1,
    lease_expires = $1 + j.timeout_ms
-- Found by primary key: joined to `picked` instead, a batch of a few hundred made the planner
-- hash the whole table (a sequential scan per claim, 10 ms at 20k rows).
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING j.id, j.kind, j.payload, j.priority, j.attempts, j.max_attempts, j.timeout_ms
