-- Mark a batch of jobs succeeded, given as parallel arrays: ids $1, attempts $2, results $3.
-- Only a lease still held (running, owned by node $5, same attempt) is finished: a job
-- reclaimed or cancelled meanwhile is left alone.
UPDATE pool_jobs AS j
SET state = 'succeeded', result = d.result, error = NULL, finished_at = $4,
    lease_expires = NULL
FROM unnest($1::text[], $2::int[], $3::text[]) AS d(id, attempt, result)
-- j.id = ANY(...): an index condition on the primary key, so a large batch is still found by
-- key rather than by hashing the whole table.
WHERE j.id = ANY($1::text[]) AND j.id = d.id AND j.state = 'running' AND j.lease_owner = $5
  AND j.attempts = d.attempt
