-- Row lock on Postgres: concurrent appends to one conversation queue here, so each then reads
-- the other's committed max(seq). A title is only filled in, never overwritten.
UPDATE conversations
SET updated_at = $2, title = COALESCE(title, $3)
WHERE id = $1
