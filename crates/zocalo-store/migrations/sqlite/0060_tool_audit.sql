-- Guard rails (zocalo-agent guard): every tool call the ask loop handled, and the tools a user
-- approved for the rest of a conversation (SQLite). Instants are integer milliseconds since
-- the Unix epoch.

CREATE TABLE tool_audit (
    -- aud_<UUIDv7>: sorts by creation time.
    id              TEXT PRIMARY KEY NOT NULL,
    created_at      INTEGER NOT NULL,
    -- No foreign key: a row is written right after its call, before the turn (and, for a new
    -- conversation, the conversation) is committed. An ask that fails later leaves its rows.
    conversation_id TEXT NOT NULL,
    -- The provider's id for the call (call_…, toolu_…).
    call_id         TEXT NOT NULL,
    tool            TEXT NOT NULL,
    -- JSON, with secret-looking keys and known secret values redacted, long strings cut.
    arguments       TEXT NOT NULL,
    -- Whether the call was let through, and on whose word.
    decision        TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
    decided_by      TEXT NOT NULL CHECK (decided_by IN
                        ('policy', 'user', 'always', 'allow-flag', 'yes-flag', 'unattended')),
    outcome         TEXT NOT NULL CHECK (outcome IN ('ok', 'error', 'denied')),
    -- Time the tool itself ran (0 when it did not); waiting for an approval is not counted.
    duration_ms     INTEGER NOT NULL CHECK (duration_ms >= 0),
    -- The start of the result or error, redacted like the arguments.
    excerpt         TEXT,
    CHECK ((decision = 'deny') = (outcome = 'denied'))
) STRICT;

CREATE INDEX tool_audit_created ON tool_audit (created_at DESC, id DESC);
CREATE INDEX tool_audit_conversation ON tool_audit (conversation_id, created_at DESC, id DESC);

-- "Always in this conversation" answers: the tool runs without asking again in it.
CREATE TABLE tool_grants (
    -- No foreign key, as above: granted in the middle of the conversation's first turn.
    conversation_id TEXT NOT NULL,
    tool            TEXT NOT NULL,
    granted_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, tool)
) STRICT;

-- Daily budgets and `usage --since` sum the messages of a time range.
CREATE INDEX messages_created ON messages (created_at);
