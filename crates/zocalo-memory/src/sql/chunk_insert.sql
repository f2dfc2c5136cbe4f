INSERT INTO memory_chunks (memory_id, seq, text, model, vector)
VALUES ($1, $2, $3, $4, $5)
