-- When the next queued job this node could run becomes ready (NULL: none is queued). Idle
-- workers sleep until then at most; a draining worker stops when there is none.
SELECT MIN(run_at) FROM pool_jobs
WHERE state = 'queued'
  AND kind IN (SELECT value FROM json_each($1))
  AND NOT EXISTS (SELECT 1 FROM json_each(pool_jobs.labels) AS l
                  WHERE l.value NOT IN (SELECT value FROM json_each($2)))
