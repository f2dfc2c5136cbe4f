-- Sub-agent batches (zocalo-agent spawn): one row per batch, one per agent in it (PostgreSQL).
-- Instants are integer milliseconds since the Unix epoch.

CREATE TABLE agent_batches (
    id              TEXT PRIMARY KEY,
    -- The conversation whose model spawned the batch (spawn_agents tool); NULL from the CLI.
    -- No foreign key: the parent's turn is committed only after its tool calls return.
    parent_conversation_id TEXT,
    -- 1 for agents spawned by a user, parent depth + 1 for agents spawned by agents.
    depth           BIGINT NOT NULL CHECK (depth >= 1),
    provider        TEXT,
    model           TEXT,
    -- 'local' (ask loops in this process) or 'pool' (one ask job per agent).
    runner          TEXT NOT NULL CHECK (runner IN ('local', 'pool')),
    concurrency     BIGINT NOT NULL CHECK (concurrency > 0),
    timeout_ms      BIGINT CHECK (timeout_ms > 0),
    total           BIGINT NOT NULL CHECK (total >= 0),
    state           TEXT NOT NULL CHECK (state IN ('running', 'finished', 'cancelled')),
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);

CREATE INDEX agent_batches_created ON agent_batches (created_at DESC, id DESC);

CREATE TABLE agent_runs (
    batch_id        TEXT NOT NULL REFERENCES agent_batches (id) ON DELETE CASCADE,
    -- Position in the input, from 0: results are listed in this order.
    seq             BIGINT NOT NULL CHECK (seq >= 0),
    -- The caller's id for the task, unique in its batch.
    task_id         TEXT NOT NULL,
    prompt          TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'ok', 'error')),
    -- Why an agent ended in error: the ask failed, it ran past its timeout, or it was
    -- cancelled (by the user, or by the batch deadline) before it finished.
    error_kind      TEXT CHECK (error_kind IN ('failed', 'timeout', 'cancelled', 'deadline')),
    error           TEXT,
    output          TEXT,
    -- The agent's own conversation (set when its answer was committed).
    conversation_id TEXT REFERENCES conversations (id) ON DELETE SET NULL,
    -- The pool job that ran it (runner 'pool').
    job_id          TEXT,
    elapsed_ms      BIGINT CHECK (elapsed_ms >= 0),
    finished_at     BIGINT,
    CHECK ((status = 'error') = (error_kind IS NOT NULL)),
    PRIMARY KEY (batch_id, seq),
    UNIQUE (batch_id, task_id)
);

-- From a conversation to the batch that made it.
CREATE INDEX agent_runs_conversation ON agent_runs (conversation_id)
    WHERE conversation_id IS NOT NULL;
