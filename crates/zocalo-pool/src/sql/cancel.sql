-- Cancel: a queued job ends at once; a running one keeps finished_at NULL until its worker has
-- stopped it (the worker finds it through its heartbeat).
UPDATE pool_jobs
SET state = 'cancelled',
    finished_at = CASE WHEN state = 'queued' THEN $2 ELSE NULL END
WHERE id = $1 AND state IN ('queued', 'running')
RETURNING finished_at
