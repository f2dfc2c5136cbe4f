SELECT COUNT(*) FROM conversation_keys WHERE key = $1
