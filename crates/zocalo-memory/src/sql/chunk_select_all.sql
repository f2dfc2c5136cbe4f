SELECT memory_id, seq, text, model, vector
FROM memory_chunks
ORDER BY memory_id, seq
