SELECT COUNT(*) FROM memories WHERE id = $1
