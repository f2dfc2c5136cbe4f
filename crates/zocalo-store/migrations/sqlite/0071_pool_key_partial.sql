-- The PostgreSQL migration of this version replaces pool_jobs' UNIQUE constraint on
-- idempotency_key with a partial index. SQLite cannot drop a column constraint without
-- rebuilding the table, and its unique index is cheap to keep (one writer, no MVCC copies per
-- update), so this version changes nothing here: it exists because both backends share their
-- migration versions.
SELECT 1;
