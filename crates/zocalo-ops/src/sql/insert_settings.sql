INSERT INTO conversation_settings (conversation_id, persona, model, updated_at)
VALUES ($1, $2, $3, $4)
