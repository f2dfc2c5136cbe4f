DELETE FROM memory_chunks WHERE memory_id = $1
