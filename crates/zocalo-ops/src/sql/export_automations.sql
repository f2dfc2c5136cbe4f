-- catchup_limit is INTEGER on Postgres: widened so one Rust type reads it on both backends.
SELECT id, name, rrule, dtstart, tz, action, paused, next_run_at, misfire,
       CAST(catchup_limit AS BIGINT) AS catchup_limit, created_at, updated_at
FROM sched_automations
ORDER BY id
