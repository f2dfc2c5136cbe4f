-- PostgreSQL only: wakes the handles listening on this schema's channel (delivered at commit,
-- once per transaction). See change_channel.sql.
SELECT pg_notify('zocalo_memory_' || md5(COALESCE(current_schema(), '')), '')
