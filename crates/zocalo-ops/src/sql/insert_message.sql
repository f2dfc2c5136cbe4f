INSERT INTO messages (id, conversation_id, seq, role, content, tool_calls, tool_call_id,
                      is_error, model, provider, input_tokens, output_tokens, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
