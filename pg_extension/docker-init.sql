-- First start of the compose database: the sidecar's role and the extension.
-- The sidecar's password comes from the compose file (LASER_SIDECAR_PASSWORD); change both together.
CREATE ROLE laser_sidecar LOGIN INHERIT BYPASSRLS PASSWORD 'laser_sidecar';
ALTER ROLE laser_sidecar SET default_transaction_read_only = on;
ALTER ROLE laser_sidecar SET statement_timeout = '300s';
GRANT pg_read_all_data TO laser_sidecar;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS laser CASCADE;
