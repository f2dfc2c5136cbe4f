-- Moves each automation of the batch ($1: [{"id","old","next"}]) to its next occurrence, as a
-- compare-and-set on the value read (the rows are locked by due.sql, so this is a second
-- guard); only the ids returned fire.
UPDATE sched_automations AS a
SET next_run_at = b.next, updated_at = $2
FROM jsonb_to_recordset($1::jsonb) AS b(id text, old bigint, next bigint)
WHERE a.id = b.id AND a.next_run_at = b.old AND a.paused = FALSE
RETURNING a.id
