-- Scheduler: what to do with occurrences missed while no scheduler ran (PostgreSQL).
-- skip: fire nothing late (only an occurrence at most a minute old); run-once: fire the
-- latest missed one (the default); run-all: fire every missed one, at most catchup_limit
-- (the latest ones).
ALTER TABLE sched_automations ADD COLUMN misfire TEXT NOT NULL DEFAULT 'run-once'
    CHECK (misfire IN ('skip', 'run-once', 'run-all'));
ALTER TABLE sched_automations ADD COLUMN catchup_limit INTEGER NOT NULL DEFAULT 100
    CHECK (catchup_limit >= 1);
