SELECT conversation_id, through_seq, text, model, created_at FROM conversation_summaries
ORDER BY conversation_id, through_seq
