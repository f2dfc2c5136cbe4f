SELECT idempotency_key, id FROM pool_jobs
WHERE idempotency_key = ANY($1::text[])
