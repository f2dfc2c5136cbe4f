INSERT INTO sched_automations (id, name, rrule, dtstart, tz, action, paused, next_run_at,
                               created_at, updated_at, misfire, catchup_limit)
VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $8, $8, $9, $10)
