-- Services (zocalo-services), SQLite: long-running processes the daemon supervises. One row
-- holds the definition (what the user added) and the last known runtime state (written by the
-- supervisor on every transition). Instants are integer milliseconds since the Unix epoch.

CREATE TABLE svc_services (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    -- The command line as the user typed it; split into argv (shell quoting rules) at start.
    command       TEXT NOT NULL CHECK (length(command) > 0),
    restart       TEXT NOT NULL CHECK (restart IN ('always', 'on-failure', 'never')),
    -- {"http": URL} or {"cmd": COMMAND}; NULL: no health check.
    health        TEXT,
    -- JSON object of extra environment variables.
    env           TEXT NOT NULL DEFAULT '{}',
    cwd           TEXT,
    -- What the user asked for; a daemon that starts brings back every service marked running.
    desired       TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
    state         TEXT NOT NULL,
    -- The process group leader (pid = pgid) and what identifies it across pid reuse: its start
    -- time in clock ticks after boot (/proc/PID/stat field 22) and the kernel's boot id.
    pid           INTEGER,
    pid_start     INTEGER,
    pid_boot      TEXT,
    restarts      INTEGER NOT NULL DEFAULT 0,
    last_exit     TEXT,
    error         TEXT,
    health_status TEXT,
    health_error  TEXT,
    started_at    INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;
