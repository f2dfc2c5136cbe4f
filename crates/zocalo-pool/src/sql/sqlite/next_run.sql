-- When a job this node could run may next be ready to claim: a queued job's run_at, or $3
-- (the caller's next poll) for one running anywhere, since it may fail or be reclaimed. NULL
-- when there is none: idle workers sleep until then at most; a draining worker stops.
SELECT MIN(CASE WHEN state = 'queued' THEN run_at ELSE $3 END) FROM pool_jobs
WHERE state IN ('queued', 'running')
  AND kind IN (SELECT value FROM json_each($1))
  AND NOT EXISTS (SELECT 1 FROM json_each(pool_jobs.labels) AS l
                  WHERE l.value NOT IN (SELECT value FROM json_each($2)))
