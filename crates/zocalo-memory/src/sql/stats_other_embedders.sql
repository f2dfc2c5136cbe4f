SELECT model, COUNT(*)
FROM memory_chunks
WHERE vector IS NOT NULL AND model IS NOT NULL AND model <> $1
GROUP BY model
ORDER BY model
