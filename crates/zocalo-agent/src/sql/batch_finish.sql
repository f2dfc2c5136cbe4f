UPDATE agent_batches SET state = $2, finished_at = $3 WHERE id = $1
