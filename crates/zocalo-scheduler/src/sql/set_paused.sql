-- Pausing keeps next_run_at; resuming recomputes it from now, so the occurrences that fell in
-- the pause are skipped rather than fired on resume.
UPDATE sched_automations SET paused = $2, next_run_at = $3, updated_at = $4 WHERE name = $1
