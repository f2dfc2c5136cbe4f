-- The memory change log (zocalo-memory), PostgreSQL. Every write to `memories` /
-- `memory_chunks` appends one row per memory it touched, in the same transaction, so that
-- other processes and other nodes can bring their in-memory indexes up to date by reading the
-- rows past the last one they applied instead of reloading everything.
--
-- Sequence values are handed out at insert time but become visible at commit, so concurrent
-- writers could make seq 11 visible before seq 10. Writers therefore take a transaction-level
-- advisory lock just before inserting their change rows (zocalo-memory, change_lock.sql):
-- change rows then commit in seq order, and a reader that has seen seq N has seen every
-- committed row below N.

CREATE TABLE memory_changes (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_id   TEXT NOT NULL,
    -- What the writer did; a reader takes the memory's current rows as the truth either way
    -- (a change for a memory that is gone is applied as a delete).
    op          TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    -- When it was written, integer milliseconds since the Unix epoch (for pruning).
    at          BIGINT NOT NULL
);

CREATE INDEX memory_changes_at ON memory_changes (at);
