-- When a job this node could run may next be ready to claim: a queued job's run_at, or $3
-- (the caller's next poll) for one running anywhere, since it may fail or be reclaimed. NULL
-- when there is none: idle workers sleep until then at most; a draining worker stops.
SELECT MIN(CASE WHEN state = 'queued' THEN run_at ELSE $3 END) FROM pool_jobs
WHERE state IN ('queued', 'running')
  AND kind IN (SELECT jsonb_array_elements_text($1::jsonb))
  AND (labels = '[]' OR labels::jsonb <@ $2::jsonb)
