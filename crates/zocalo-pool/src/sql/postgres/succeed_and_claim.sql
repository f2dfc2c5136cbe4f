-- The worker's steady state in one round trip: record the successes of the last batch (parallel
-- arrays: ids $6, attempts $7, results $8; only leases node $2 still holds) and claim up to $5
-- more, as claim.sql does. Rows: the claimed jobs (done = false), then the ids recorded as
-- succeeded (done = true). The two updates touch disjoint rows (running vs queued).
WITH done AS (
    UPDATE pool_jobs AS j
    SET state = 'succeeded', result = d.result, error = NULL, finished_at = $1,
        lease_expires = NULL
    FROM unnest($6::text[], $7::int[], $8::text[]) AS d(id, attempt, result)
    -- j.id = ANY(...): an index condition on the primary key, so a large batch is still
    -- found by key rather than by hashing the whole table.
    WHERE j.id = ANY($6::text[]) AND j.id = d.id AND j.state = 'running'
      AND j.lease_owner = $2 AND j.attempts = d.attempt
    RETURNING j.id
), picked AS (
    SELECT id FROM pool_jobs
    WHERE state = 'queued' AND run_at <= $1
      AND kind = ANY($3::text[])
      AND (labels = '[]' OR labels::jsonb <@ $4::jsonb)
    ORDER BY priority DESC, run_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE pool_jobs AS j
    SET state = 'running', attempts = j.attempts + 1, lease_owner = $2, started_at = $1,
        lease_expires = $1 + j.timeout_ms
    -- Found by primary key: joined to `picked` instead, a batch of a few hundred made the planner
    -- hash the whole table (a sequential scan per claim, 10 ms at 20k rows).
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.kind, j.payload, j.priority, j.attempts, j.max_attempts, j.timeout_ms
)
SELECT FALSE AS done, id, kind, payload, priority, attempts, max_attempts, timeout_ms
FROM claimed
UNION ALL
SELECT TRUE, id, NULL, NULL, NULL, NULL, NULL, NULL FROM done
