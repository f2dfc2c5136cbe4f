-- Of the jobs node $2 believes it runs ($1: JSON array of {"id","attempt"}), the ones it no
-- longer holds: cancelled, reclaimed after it went silent, or gone.
SELECT d.id, j.state
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt
      FROM json_each($1)) AS d
LEFT JOIN pool_jobs AS j ON j.id = d.id
WHERE j.id IS NULL OR j.state <> 'running' OR j.lease_owner IS NOT $2
   OR j.attempts <> d.attempt
