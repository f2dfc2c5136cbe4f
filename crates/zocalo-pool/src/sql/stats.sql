SELECT state, COUNT(*) AS n FROM pool_jobs GROUP BY state
