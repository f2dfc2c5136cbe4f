-- Which provider answered an assistant message (a fallback chain may move on from the first
-- choice). NULL for user and tool messages, and for rows written before this migration.
ALTER TABLE messages ADD COLUMN provider TEXT;
