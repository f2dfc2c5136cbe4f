SELECT COUNT(*) FROM svc_services WHERE id = $1 OR name = $2
