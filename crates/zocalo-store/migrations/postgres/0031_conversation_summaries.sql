-- Context compression (issue 6), PostgreSQL. Same shape as the SQLite migration: the model's
-- summary of a conversation's oldest turns, kept next to the conversation (the original
-- messages stay); the row with the highest `through_seq` is the one in use.

CREATE TABLE conversation_summaries (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The summary stands for messages 1..=through_seq of the conversation.
    through_seq     BIGINT NOT NULL CHECK (through_seq > 0),
    text            TEXT NOT NULL CHECK (length(text) > 0),
    -- The model that wrote it.
    model           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, through_seq)
);
