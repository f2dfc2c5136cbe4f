UPDATE memories SET text = $2, metadata = $3, updated_at = $4 WHERE id = $1
