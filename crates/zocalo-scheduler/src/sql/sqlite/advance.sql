-- Moves each automation of the batch ($1: [{"id","old","next"}]) to its next occurrence, as a
-- compare-and-set on the value read: a row another ticker moved already is left alone, and
-- only the ids returned fire.
UPDATE sched_automations
SET next_run_at = json_extract(b.value, '$.next'), updated_at = $2
FROM json_each($1) AS b
WHERE sched_automations.id = json_extract(b.value, '$.id')
  AND sched_automations.next_run_at = json_extract(b.value, '$.old')
  AND sched_automations.paused = FALSE
RETURNING sched_automations.id
