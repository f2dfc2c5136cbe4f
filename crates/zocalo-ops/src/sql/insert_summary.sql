INSERT INTO conversation_summaries (conversation_id, through_seq, text, model, created_at)
VALUES ($1, $2, $3, $4, $5)
