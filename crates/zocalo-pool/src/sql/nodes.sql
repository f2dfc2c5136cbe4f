SELECT n.id, n.hostname, n.pid, n.labels, n.kinds, n.capacity, n.state, n.started_at,
       n.last_seen, n.timeout_ms,
       (SELECT COUNT(*) FROM pool_jobs AS j
        WHERE j.state = 'running' AND j.lease_owner = n.id) AS running
FROM pool_nodes AS n
ORDER BY n.started_at DESC, n.id
LIMIT $1
