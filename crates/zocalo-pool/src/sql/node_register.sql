INSERT INTO pool_nodes (id, hostname, pid, labels, kinds, capacity, state, started_at,
                        last_seen, timeout_ms)
VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7, $8)
