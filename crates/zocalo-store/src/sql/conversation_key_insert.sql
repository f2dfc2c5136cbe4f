-- A concurrent first use of the same key inserts nothing here; its caller rolls back the
-- conversation it created and reads the winner's.
INSERT INTO conversation_keys (key, conversation_id, created_at)
VALUES ($1, $2, $3)
ON CONFLICT (key) DO NOTHING
