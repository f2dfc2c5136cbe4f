-- Enqueue the jobs that carry an idempotency key, given as parallel arrays (one element per
-- job; binary array parameters cost less to decode than a JSON document); a key already taken
-- is skipped (the caller then looks the existing job up). Jobs without a key take the faster
-- COPY path (see `copy_jobs` in queue.rs).
INSERT INTO pool_jobs (id, kind, payload, priority, labels, idempotency_key, max_attempts,
                       timeout_ms, run_at, created_at)
SELECT j.id, j.kind, j.payload, j.priority, j.labels, j.key, j.max_attempts, j.timeout_ms,
       j.run_at, $10
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::int[],
            $8::bigint[], $9::bigint[])
     AS j(id, kind, payload, priority, labels, key, max_attempts, timeout_ms, run_at)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
