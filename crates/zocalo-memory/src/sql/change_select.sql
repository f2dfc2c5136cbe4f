SELECT seq, memory_id
FROM memory_changes
WHERE seq > $1
ORDER BY seq
LIMIT $2
