-- Runs recorded whose job was never enqueued (the ticker died in between), older than a
-- grace period so a live ticker finishing its own enqueue is not raced for nothing.
SELECT r.id, r.occurrence, a.id, a.name, a.action
FROM sched_runs r JOIN sched_automations a ON a.id = r.automation_id
WHERE r.job_id IS NULL AND r.created_at <= $1
ORDER BY r.created_at
LIMIT $2
