SELECT c.memory_id, c.seq, c.text, c.model, m.metadata
FROM memory_chunks c
JOIN memories m ON m.id = c.memory_id
WHERE c.vector IS NULL OR c.model IS NULL OR c.model <> $1
ORDER BY c.memory_id, c.seq
