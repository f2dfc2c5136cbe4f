-- One row per imported memory, so running processes bring their indexes up to date
-- (zocalo-memory's change log, migration 0032).
INSERT INTO memory_changes (memory_id, op, at) VALUES ($1, 'upsert', $2)
