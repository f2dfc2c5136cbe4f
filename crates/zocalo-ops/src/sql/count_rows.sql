-- What makes a database "not empty" for a restore.
SELECT (SELECT COUNT(*) FROM conversations) AS conversations,
       (SELECT COUNT(*) FROM memories) AS memories,
       (SELECT COUNT(*) FROM sched_automations) AS automations,
       (SELECT COUNT(*) FROM svc_services) AS services
