SELECT id, name, rrule, dtstart, tz, action, paused, next_run_at, created_at, misfire,
       catchup_limit
FROM sched_automations
