INSERT INTO memory_changes (memory_id, op, at) VALUES ($1, $2, $3)
RETURNING seq
