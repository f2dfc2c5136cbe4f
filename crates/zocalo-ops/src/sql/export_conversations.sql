SELECT id, title, created_at, updated_at FROM conversations ORDER BY id
