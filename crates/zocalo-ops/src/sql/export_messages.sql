SELECT id, conversation_id, seq, role, content, tool_calls, tool_call_id, is_error, model,
       provider, input_tokens, output_tokens, created_at
FROM messages
ORDER BY conversation_id, seq
