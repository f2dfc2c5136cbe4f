-- No model and no vector: every process with an embedder computes the missing vectors when
-- it loads or syncs the memory (zocalo-memory), so an export never carries a model's output.
INSERT INTO memory_chunks (memory_id, seq, text, model, vector) VALUES ($1, $2, $3, NULL, NULL)
