UPDATE memory_chunks SET model = $3, vector = $4
WHERE memory_id = $1 AND seq = $2 AND text = $5
