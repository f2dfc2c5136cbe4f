SELECT m.id, m.scope, m.text, m.metadata, m.source, m.created_at, m.updated_at,
       c.seq AS chunk_seq, c.text AS chunk_text, c.model, c.vector
FROM memories m
LEFT JOIN memory_chunks c ON c.memory_id = m.id
WHERE m.id IN (/* ids */)
ORDER BY m.id, c.seq
