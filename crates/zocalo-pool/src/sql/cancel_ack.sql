UPDATE pool_jobs SET finished_at = $2, lease_expires = NULL
WHERE id = $1 AND state = 'cancelled' AND finished_at IS NULL
