SELECT vector
FROM memory_chunks
WHERE model = $1 AND vector IS NOT NULL
LIMIT 1
