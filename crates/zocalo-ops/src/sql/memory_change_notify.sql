-- PostgreSQL only: wakes the memory handles listening on this schema (zocalo-memory's
-- src/sql/change_notify.sql), delivered at commit.
SELECT pg_notify('zocalo_memory_' || md5(COALESCE(current_schema(), '')), '')
