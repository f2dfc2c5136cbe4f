-- Of the jobs node $2 believes it runs ($1: JSON array of {"id","attempt"}), the ones it no
-- longer holds: cancelled, reclaimed after it went silent, or gone.
SELECT d.id, j.state
FROM jsonb_to_recordset($1::jsonb) AS d(id text, attempt int)
LEFT JOIN pool_jobs AS j ON j.id = d.id
WHERE j.id IS NULL OR j.state <> 'running' OR j.lease_owner IS DISTINCT FROM $2
   OR j.attempts <> d.attempt
