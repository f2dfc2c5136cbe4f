-- Mark a batch of jobs succeeded: $1 is a JSON array of {"id","attempt","result"}. Only a lease
-- still held (running, owned by node $3, same attempt) is finished: a job reclaimed or
-- cancelled meanwhile is left alone.
UPDATE pool_jobs
SET state = 'succeeded', result = d.result, error = NULL, finished_at = $2,
    lease_expires = NULL
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
             json_extract(value, '$.result') AS result
      FROM json_each($1)) AS d
WHERE pool_jobs.id = d.id AND pool_jobs.state = 'running' AND pool_jobs.lease_owner = $3
  AND pool_jobs.attempts = d.attempt
