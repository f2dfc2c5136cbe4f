SELECT idempotency_key, id FROM pool_jobs
WHERE idempotency_key IN (SELECT jsonb_array_elements_text($1::jsonb))
