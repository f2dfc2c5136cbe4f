-- Long-term memory (zocalo-memory), PostgreSQL. The database is the truth: the keyword and
-- vector indexes are rebuilt from these rows at start-up. Instants are integer milliseconds
-- since the Unix epoch.

CREATE TABLE memories (
    id          TEXT PRIMARY KEY,
    -- `user:…`, `agent:…`, `conv:…` by convention; search takes one or more.
    scope       TEXT NOT NULL CHECK (length(scope) > 0),
    text        TEXT NOT NULL CHECK (length(text) > 0),
    -- JSON object of string -> string | number (text, so both backends read it the same way).
    metadata    TEXT NOT NULL DEFAULT '{}',
    -- What it came from, e.g. `conv_…/msg_…`, `cli`, `tool:memory_save`.
    source      TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX memories_scope ON memories (scope, created_at);

-- A memory longer than the embedder's window is split; every chunk is indexed and points back
-- to its memory. A short memory has one chunk (seq 0).
CREATE TABLE memory_chunks (
    memory_id   TEXT NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    text        TEXT NOT NULL,
    -- The embedder that made `vector` (NULL: no vector yet; filled when an embedder is there).
    model       TEXT,
    -- Little-endian f32 x dim, unit length.
    vector      BYTEA,
    PRIMARY KEY (memory_id, seq)
);
