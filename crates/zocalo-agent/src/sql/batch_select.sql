-- A batch with its agents counted by status (the caller appends WHERE / ORDER BY / LIMIT).
SELECT b.id, b.parent_conversation_id, b.depth, b.provider, b.model, b.runner,
       b.concurrency, b.timeout_ms, b.state, b.total, b.created_at, b.finished_at,
       (SELECT COUNT(*) FROM agent_runs r WHERE r.batch_id = b.id AND r.status = 'ok') AS ok,
       (SELECT COUNT(*) FROM agent_runs r WHERE r.batch_id = b.id AND r.status = 'error') AS error
FROM agent_batches b
