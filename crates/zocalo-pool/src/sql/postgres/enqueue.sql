-- Enqueue a batch given as one JSON array of job objects; a key already taken is skipped (the
-- caller then looks the existing job up).
INSERT INTO pool_jobs (id, kind, payload, priority, labels, idempotency_key, max_attempts,
                       timeout_ms, run_at, created_at)
SELECT j.id, j.kind, j.payload, j.priority, j.labels, j.key, j.max_attempts, j.timeout_ms,
       j.run_at, $2
FROM jsonb_to_recordset($1::jsonb) AS j(id text, kind text, payload text, priority int,
                                        labels text, key text, max_attempts int,
                                        timeout_ms bigint, run_at bigint)
ON CONFLICT (idempotency_key) DO NOTHING
