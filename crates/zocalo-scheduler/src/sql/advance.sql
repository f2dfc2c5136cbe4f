-- Compare-and-set: only the ticker that still sees the next_run_at it read moves it on (and
-- so fires). A concurrent ticker's UPDATE waits for the row lock, re-reads, matches nothing.
UPDATE sched_automations
SET next_run_at = $3, updated_at = $4
WHERE id = $1 AND next_run_at = $2 AND paused = FALSE
