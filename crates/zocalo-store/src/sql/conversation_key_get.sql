SELECT conversation_id FROM conversation_keys WHERE key = $1
