-- Compute pool (zocalo-pool): durable jobs and the worker nodes that run them (SQLite).
-- Instants are integer milliseconds since the Unix epoch, so lease and retry arithmetic is
-- plain integer math on both backends.

CREATE TABLE pool_jobs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    -- JSON text; validated by the kind's handler at submit time.
    payload         TEXT NOT NULL,
    -- Higher runs first.
    priority        INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    -- JSON array of labels, sorted; a node runs the job only if it has every one.
    labels          TEXT NOT NULL DEFAULT '[]',
    -- Enqueueing again with the same key returns this job instead of a new one.
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
    -- Claims so far (the current one included while running).
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout_ms      INTEGER NOT NULL CHECK (timeout_ms > 0),
    -- Not before this instant (retries are pushed into the future by the backoff).
    run_at          INTEGER NOT NULL,
    -- The node running it (kept after it ends, as a record of where it ran).
    lease_owner     TEXT,
    lease_expires   INTEGER,
    result          TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    -- NULL while queued or running; a cancelled running job gets it when its worker stops it.
    finished_at     INTEGER
);

-- The claim query walks this in order and stops after the batch.
CREATE INDEX pool_jobs_ready ON pool_jobs (priority DESC, run_at, id) WHERE state = 'queued';
-- Reclaim and heartbeats look at running jobs by owner.
CREATE INDEX pool_jobs_running ON pool_jobs (lease_owner) WHERE state = 'running';
-- Workers look for their running jobs that were cancelled.
CREATE INDEX pool_jobs_cancelling ON pool_jobs (lease_owner)
    WHERE state = 'cancelled' AND finished_at IS NULL;
CREATE INDEX pool_jobs_state ON pool_jobs (state, id);

CREATE TABLE pool_nodes (
    id          TEXT PRIMARY KEY,
    hostname    TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    -- JSON arrays.
    labels      TEXT NOT NULL DEFAULT '[]',
    kinds       TEXT NOT NULL DEFAULT '[]',
    capacity    INTEGER NOT NULL CHECK (capacity > 0),
    state       TEXT NOT NULL CHECK (state IN ('active', 'draining', 'stopped', 'lost')),
    started_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    -- Silent longer than this, the node is lost and its running jobs are reclaimed.
    timeout_ms  INTEGER NOT NULL CHECK (timeout_ms > 0)
);
