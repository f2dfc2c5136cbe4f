SELECT id, kind, payload, priority, labels, idempotency_key, state, attempts, max_attempts,
       timeout_ms, run_at, lease_owner, lease_expires, result, error, created_at, started_at,
       finished_at
FROM pool_jobs
