-- Context compression (issue 6), SQLite. When a conversation's history no longer fits the ask
-- loop's token budget, its oldest turns are summarised by the model; the summary is kept here,
-- next to the conversation, and the original messages stay in `messages`. A new summary folds
-- in the previous one, so the row with the highest `through_seq` is the one in use; older rows
-- are kept as a record of what the model was shown.

CREATE TABLE conversation_summaries (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The summary stands for messages 1..=through_seq of the conversation.
    through_seq     INTEGER NOT NULL CHECK (through_seq > 0),
    text            TEXT NOT NULL CHECK (length(text) > 0),
    -- The model that wrote it.
    model           TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, through_seq)
) STRICT;
