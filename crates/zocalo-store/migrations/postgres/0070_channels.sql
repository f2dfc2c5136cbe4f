-- Channels (zocalo-channels): messages that came in on Telegram, email or a webhook, and where
-- each channel's poller is (PostgreSQL). Instants are integer milliseconds since the Unix epoch.

-- Where a poller resumes: Telegram's next update offset, the mailbox's UIDVALIDITY and UID.
-- Advanced in the same transaction that records the messages it covers, so a crash between
-- the two can neither lose a message nor take one twice.
CREATE TABLE channel_cursors (
    channel     TEXT PRIMARY KEY,
    -- NULL until the first batch (Telegram then starts from what it still holds).
    resume_from TEXT,
    updated_at  BIGINT NOT NULL,
    -- The poller's last error (409: another program polls this bot; 401: a bad token), and
    -- when; cleared by the next good poll. `zocalo channels status` shows it.
    last_error  TEXT,
    error_at    BIGINT
);

-- Every inbound message, once: unique on (channel, the channel's own id for it).
CREATE TABLE channel_inbox (
    -- inb_<UUIDv7>: sorts by arrival.
    id          TEXT PRIMARY KEY,
    -- telegram | email | hook:NAME
    channel     TEXT NOT NULL,
    -- Telegram's update_id, the mail's Message-ID, the webhook delivery's signature.
    external_id TEXT NOT NULL,
    sender      TEXT NOT NULL,
    -- The conversation key it is answered in (telegram:<chat id>, email:<address>, ...).
    conv_key    TEXT NOT NULL,
    text        TEXT NOT NULL,
    -- JSON: what the channel needs to reply (chat and message ids, subject and references).
    reply_to    TEXT NOT NULL,
    -- received: not answered yet (after a crash it is answered on restart); answered: the
    -- answer is stored here but was not sent yet; sent; failed (error says why).
    state       TEXT NOT NULL CHECK (state IN ('received', 'answered', 'sent', 'failed')),
    answer      TEXT,
    error       TEXT,
    attempts    BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (channel, external_id)
);

CREATE INDEX channel_inbox_open ON channel_inbox (channel, id) WHERE state IN ('received', 'answered');

-- What a conversation keeps between asks: the persona it was asked as (`ask --persona`, a
-- channel's `/persona`) and a chosen model (`/model`).
CREATE TABLE conversation_settings (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    persona         TEXT,
    model           TEXT,
    updated_at      BIGINT NOT NULL
);
