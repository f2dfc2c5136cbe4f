SELECT MIN(next_run_at) FROM sched_automations WHERE paused = FALSE AND next_run_at IS NOT NULL
