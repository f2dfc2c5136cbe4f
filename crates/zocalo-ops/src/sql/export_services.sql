-- Definitions only: the runtime state (pid, restarts, health) belongs to the machine it ran on.
SELECT id, name, command, restart, health, env, cwd, desired, created_at, updated_at
FROM svc_services
ORDER BY id
