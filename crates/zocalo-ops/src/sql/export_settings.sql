SELECT conversation_id, persona, model, updated_at FROM conversation_settings
ORDER BY conversation_id
