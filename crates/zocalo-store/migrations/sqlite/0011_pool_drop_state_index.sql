-- pool_jobs_state made every state change of a job maintain one more index, and on SQLite
-- without statistics the planner preferred it for the claim (scanning and sorting every queued
-- job instead of reading the first few of pool_jobs_ready). Listing by state scans instead.
DROP INDEX pool_jobs_state;
