SELECT r.id, r.occurrence, r.job_id, r.created_at
FROM sched_runs r JOIN sched_automations a ON a.id = r.automation_id
WHERE a.name = $1
ORDER BY r.occurrence DESC
LIMIT $2
