-- Caller-chosen conversation keys (sqlite): `ask --conv-key telegram:42` keeps one conversation
-- per key, created on first use, so a bot maps its channel or session id to a conversation
-- without a table of its own. Deleting the conversation deletes its key; the next use of the
-- key starts a new one.

CREATE TABLE conversation_keys (
    key             TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL UNIQUE REFERENCES conversations (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL
) STRICT;
