SELECT key, conversation_id, created_at FROM conversation_keys ORDER BY key
