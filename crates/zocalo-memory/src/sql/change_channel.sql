-- PostgreSQL only: the channel writers notify in this schema (a channel is per database, a
-- change log per schema; md5 keeps the name under the 63-byte limit).
SELECT 'zocalo_memory_' || md5(COALESCE(current_schema(), ''))
