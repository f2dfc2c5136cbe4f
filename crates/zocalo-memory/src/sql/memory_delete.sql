DELETE FROM memories WHERE id = $1
