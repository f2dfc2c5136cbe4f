INSERT INTO sched_automations (id, name, rrule, dtstart, tz, action, paused, next_run_at,
                               misfire, catchup_limit, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
