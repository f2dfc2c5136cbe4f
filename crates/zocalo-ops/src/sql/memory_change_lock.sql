-- PostgreSQL only: zocalo-memory's writers' lock (its src/sql/change_lock.sql; a test checks
-- the two agree), held to the commit so that change rows commit in seq order.
SELECT pg_advisory_xact_lock(1835231335, hashtext(COALESCE(current_schema(), '')))
