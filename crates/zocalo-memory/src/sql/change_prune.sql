DELETE FROM memory_changes
WHERE seq < (SELECT MAX(seq) FROM memory_changes WHERE at <= $1)
