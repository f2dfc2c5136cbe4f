-- Its runs go with it (ON DELETE CASCADE); jobs already enqueued stay in the pool.
DELETE FROM sched_automations WHERE name = $1
