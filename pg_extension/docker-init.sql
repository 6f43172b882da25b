-- First start of the compose database: the sidecar's role and the extension.
-- In compose the sidecar reaches the server over TCP with a password, so it runs with
-- --act-as set_role: grant each role that calls laser_rewrite to it (GRANT app_role TO laser_sidecar).
-- The password comes from the compose file; change both together.
CREATE ROLE laser_sidecar LOGIN NOINHERIT PASSWORD 'laser_sidecar';
ALTER ROLE laser_sidecar SET default_transaction_read_only = on;
ALTER ROLE laser_sidecar SET statement_timeout = '300s';
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS laser CASCADE;
