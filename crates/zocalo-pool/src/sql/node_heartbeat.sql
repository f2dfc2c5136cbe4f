UPDATE pool_nodes SET last_seen = $2, state = $3 WHERE id = $1
