SELECT c.id, c.title, c.created_at, c.updated_at,
       (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count
FROM conversations c
ORDER BY c.updated_at DESC, c.id DESC
LIMIT $1
