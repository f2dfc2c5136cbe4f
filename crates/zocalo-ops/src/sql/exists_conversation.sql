SELECT COUNT(*) FROM conversations WHERE id = $1
