-- The memory change log (zocalo-memory), SQLite. Every write to `memories` / `memory_chunks`
-- appends one row per memory it touched, in the same transaction, so that other processes
-- (and, on PostgreSQL, other nodes) can bring their in-memory indexes up to date by reading
-- the rows past the last one they applied instead of reloading everything.
--
-- AUTOINCREMENT, not a plain rowid: a seq is never handed out twice, even if the newest rows
-- are deleted, so "seq > last applied" never skips a change. SQLite has one writer at a time,
-- so rows become visible in seq order.

CREATE TABLE memory_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    memory_id   TEXT NOT NULL,
    -- What the writer did; a reader takes the memory's current rows as the truth either way
    -- (a change for a memory that is gone is applied as a delete).
    op          TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    -- When it was written, integer milliseconds since the Unix epoch (for pruning).
    at          INTEGER NOT NULL
) STRICT;

CREATE INDEX memory_changes_at ON memory_changes (at);
