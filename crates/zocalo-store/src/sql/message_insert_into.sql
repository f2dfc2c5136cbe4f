INSERT INTO messages (id, conversation_id, seq, role, content, tool_calls, tool_call_id,
                      is_error, model, input_tokens, output_tokens, created_at, provider) 