-- Jobs running on nodes silent longer than their own node timeout (or past their lease by a
-- node timeout more) go back to the queue, or to 'dead' when that was their last attempt.
UPDATE pool_jobs
SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,
    error = 'node ' || lease_owner || ' went silent while running it; reclaimed',
    finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
    run_at = $1, lease_expires = NULL
WHERE state = 'running'
  AND lease_owner IN (SELECT id FROM pool_nodes WHERE last_seen + timeout_ms < $1)
RETURNING id
