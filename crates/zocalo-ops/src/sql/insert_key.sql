INSERT INTO conversation_keys (key, conversation_id, created_at) VALUES ($1, $2, $3)
