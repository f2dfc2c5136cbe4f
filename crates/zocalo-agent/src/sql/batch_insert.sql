INSERT INTO agent_batches (id, parent_conversation_id, depth, provider, model, runner,
                           concurrency, timeout_ms, total, state, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'running', $10)
