-- PostgreSQL only: serialises memory writers from here to their commit, so that change rows
-- commit in seq order (see migration 0032). One lock per schema (the table's scope); the
-- first key is an arbitrary constant, b"mchg".
SELECT pg_advisory_xact_lock(1835231335, hashtext(COALESCE(current_schema(), '')))
