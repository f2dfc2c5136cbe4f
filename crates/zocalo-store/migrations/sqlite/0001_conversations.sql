-- Conversations and their messages (SQLite). Timestamps are UTC RFC 3339 text with exactly six
-- fractional digits ("2026-03-08T07:30:00.000000Z"), so text order is time order.

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY NOT NULL,
    title       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

-- list_conversations: newest updated first.
CREATE INDEX conversations_updated ON conversations (updated_at DESC, id DESC);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- 1, 2, 3, … within a conversation; the order the model sees.
    seq             INTEGER NOT NULL CHECK (seq > 0),
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content         TEXT NOT NULL,
    -- JSON array of {"id","name","arguments"}; NULL when the message calls no tools.
    tool_calls      TEXT,
    tool_call_id    TEXT,
    is_error        INTEGER NOT NULL DEFAULT 0 CHECK (is_error IN (0, 1)),
    model           TEXT,
    input_tokens    INTEGER CHECK (input_tokens >= 0),
    output_tokens   INTEGER CHECK (output_tokens >= 0),
    created_at      TEXT NOT NULL,
    -- A tool result must name the call it answers, or the provider rejects the history.
    CHECK (role <> 'tool' OR tool_call_id IS NOT NULL),
    -- Also the (conversation_id, seq) index every read of a conversation uses.
    UNIQUE (conversation_id, seq)
) STRICT;
