SELECT scope, COUNT(*) FROM memories GROUP BY scope ORDER BY scope
