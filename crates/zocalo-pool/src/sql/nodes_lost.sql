UPDATE pool_nodes SET state = 'lost'
WHERE state IN ('active', 'draining') AND last_seen + timeout_ms < $1
