SELECT idempotency_key, id FROM pool_jobs
WHERE idempotency_key IN (SELECT value FROM json_each($1))
