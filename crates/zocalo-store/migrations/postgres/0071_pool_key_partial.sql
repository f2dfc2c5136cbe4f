-- Most jobs have no idempotency key, yet the column's UNIQUE constraint indexed their NULL too,
-- and every state change of a job (queued -> running -> succeeded: none is a HOT update, as the
-- state is in the partial indexes' predicates) added one more entry to that index. A partial
-- unique index keeps the same guarantee for keys and leaves keyless jobs out: two index
-- insertions fewer per job run, and one fewer per enqueue.
ALTER TABLE pool_jobs DROP CONSTRAINT pool_jobs_idempotency_key_key;
CREATE UNIQUE INDEX pool_jobs_key ON pool_jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
