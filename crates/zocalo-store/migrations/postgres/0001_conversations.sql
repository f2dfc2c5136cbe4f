-- Conversations and their messages (PostgreSQL). Same shape as the SQLite migration.

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    title       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- list_conversations: newest updated first.
CREATE INDEX conversations_updated ON conversations (updated_at DESC, id DESC);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- 1, 2, 3, … within a conversation; the order the model sees.
    seq             BIGINT NOT NULL CHECK (seq > 0),
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content         TEXT NOT NULL,
    -- JSON array of {"id","name","arguments"}; NULL when the message calls no tools.
    tool_calls      JSONB,
    tool_call_id    TEXT,
    is_error        BOOLEAN NOT NULL DEFAULT FALSE,
    model           TEXT,
    input_tokens    BIGINT CHECK (input_tokens >= 0),
    output_tokens   BIGINT CHECK (output_tokens >= 0),
    created_at      TIMESTAMPTZ NOT NULL,
    -- A tool result must name the call it answers, or the provider rejects the history.
    CHECK (role <> 'tool' OR tool_call_id IS NOT NULL),
    -- Also the (conversation_id, seq) index every read of a conversation uses.
    UNIQUE (conversation_id, seq)
);
