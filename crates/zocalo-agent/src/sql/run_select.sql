-- The agents of one batch, in input order.
SELECT task_id, status, prompt, output, error, error_kind, elapsed_ms, conversation_id, job_id
FROM agent_runs
WHERE batch_id = $1
ORDER BY seq
