-- Audit rows, newest first; the caller appends the filter and the limit.
SELECT id, created_at, conversation_id, call_id, tool, arguments, decision, decided_by, outcome,
       duration_ms, excerpt
FROM tool_audit
