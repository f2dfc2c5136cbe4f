-- Mark a batch of jobs succeeded: $1 is a JSON array of {"id","attempt","result"}. Only a lease
-- still held (running, owned by node $3, same attempt) is finished: a job reclaimed or
-- cancelled meanwhile is left alone.
UPDATE pool_jobs AS j
SET state = 'succeeded', result = d.result, error = NULL, finished_at = $2,
    lease_expires = NULL
FROM jsonb_to_recordset($1::jsonb) AS d(id text, attempt int, result text)
WHERE j.id = d.id AND j.state = 'running' AND j.lease_owner = $3 AND j.attempts = d.attempt
