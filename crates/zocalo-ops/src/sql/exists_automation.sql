SELECT COUNT(*) FROM sched_automations WHERE id = $1 OR name = $2
