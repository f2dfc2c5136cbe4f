-- Automations whose next occurrence has come, oldest first. Runs inside BEGIN IMMEDIATE, so
-- no other ticker writes until this one commits.
SELECT id, name, rrule, dtstart, tz, action, paused, next_run_at, created_at, misfire,
       catchup_limit
FROM sched_automations
WHERE paused = FALSE AND next_run_at IS NOT NULL AND next_run_at <= $1
ORDER BY next_run_at, id
LIMIT $2
