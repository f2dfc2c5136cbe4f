-- Scheduler (zocalo-scheduler): automations and the runs they fired (SQLite).
-- Instants are integer milliseconds since the Unix epoch, like the pool's tables.

CREATE TABLE sched_automations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    -- The user's rule text (RRULE plus EXDATE/RDATE lines), the local start and the zone:
    -- the recurrence is recomputed from these, never from stored instants.
    rrule       TEXT NOT NULL,
    dtstart     TEXT NOT NULL,
    tz          TEXT NOT NULL,
    -- {"kind": "ask"|"skill"|"shell", "payload": {...}}: the pool job to enqueue.
    action      TEXT NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- The next occurrence to fire; NULL when the rule has no more.
    next_run_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Tickers look for due automations in this order.
CREATE INDEX sched_automations_due ON sched_automations (next_run_at)
    WHERE paused = FALSE AND next_run_at IS NOT NULL;

CREATE TABLE sched_runs (
    id            TEXT PRIMARY KEY,
    automation_id TEXT NOT NULL REFERENCES sched_automations (id) ON DELETE CASCADE,
    -- The occurrence fired (UTC ms). Unique per automation: the exactly-once guarantee.
    occurrence    INTEGER NOT NULL,
    -- The pool job; NULL until it is enqueued (a ticker that died in between leaves it for
    -- the next tick, which enqueues it under the same idempotency key).
    job_id        TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (automation_id, occurrence)
);

CREATE INDEX sched_runs_unqueued ON sched_runs (created_at) WHERE job_id IS NULL;
