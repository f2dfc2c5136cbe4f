-- Before a replacing import deletes every memory: tell running processes to drop them.
INSERT INTO memory_changes (memory_id, op, at) SELECT id, 'delete', $1 FROM memories
