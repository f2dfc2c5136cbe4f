-- Opens conversation_for_key's transaction with a write, so SQLite takes its write lock here
-- (waiting on busy_timeout) instead of failing a read-to-write upgrade later; Postgres waits here
-- on a concurrent creator of the same id.
INSERT INTO conversations (id, title, created_at, updated_at)
VALUES ($1, $2, $3, $3)
ON CONFLICT (id) DO NOTHING
