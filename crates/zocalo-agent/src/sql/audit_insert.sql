-- One tool call the ask loop handled (guard rails, migration 0060).
INSERT INTO tool_audit (id, created_at, conversation_id, call_id, tool, arguments, decision,
                        decided_by, outcome, duration_ms, excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
