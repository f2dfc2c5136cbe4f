-- Enqueue a batch given as one JSON array of job objects; a key already taken is skipped (the
-- caller then looks the existing job up).
INSERT INTO pool_jobs (id, kind, payload, priority, labels, idempotency_key, max_attempts,
                       timeout_ms, run_at, created_at)
SELECT json_extract(value, '$.id'), json_extract(value, '$.kind'),
       json_extract(value, '$.payload'), json_extract(value, '$.priority'),
       json_extract(value, '$.labels'), json_extract(value, '$.key'),
       json_extract(value, '$.max_attempts'), json_extract(value, '$.timeout_ms'),
       json_extract(value, '$.run_at'), $2
FROM json_each($1)
WHERE true
ON CONFLICT (idempotency_key) DO NOTHING
