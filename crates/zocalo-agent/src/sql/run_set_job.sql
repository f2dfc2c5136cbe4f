UPDATE agent_runs SET job_id = $3 WHERE batch_id = $1 AND seq = $2
