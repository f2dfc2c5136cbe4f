-- Stopped until a daemon starts it: `desired` carries what the user asked for, and a daemon
-- brings back every service marked running.
INSERT INTO svc_services (id, name, command, restart, health, env, cwd, desired, state,
                          restarts, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'stopped', 0, $9, $10)
