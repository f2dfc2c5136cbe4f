INSERT INTO memories (id, scope, text, metadata, source, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
