SELECT id, scope, text, metadata, source, created_at, updated_at FROM memories ORDER BY id
