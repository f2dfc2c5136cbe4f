-- Hand a running job back untouched (graceful shutdown): queued again at once, and the attempt
-- it was on does not count.
UPDATE pool_jobs
SET state = 'queued', attempts = attempts - 1, run_at = $4, lease_expires = NULL
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3
