-- End one attempt that did not succeed: back to 'queued' at $6 (a retry), or 'failed' / 'dead'
-- for good. Only while the lease ($2, $3) is still held.
UPDATE pool_jobs
SET state = $4, error = $5, run_at = COALESCE($6, run_at), finished_at = $7,
    lease_expires = NULL
WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3
