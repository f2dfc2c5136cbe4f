SELECT id, name, rrule, dtstart, tz, action, paused, next_run_at, created_at
FROM sched_automations
