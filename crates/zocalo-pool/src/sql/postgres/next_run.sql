-- When the next queued job this node could run becomes ready (NULL: none is queued). Idle
-- workers sleep until then at most; a draining worker stops when there is none.
SELECT MIN(run_at) FROM pool_jobs
WHERE state = 'queued'
  AND kind IN (SELECT jsonb_array_elements_text($1::jsonb))
  AND (labels = '[]' OR labels::jsonb <@ $2::jsonb)
