-- 001: the laser schema and the record of applied migrations (runs once per database).
create schema if not exists laser;
comment on schema laser is 'LASER for PostgreSQL: internal objects (migrations, later advisories)';

create table if not exists laser.migration
( name text not null primary key
, applied_at timestamptz not null default pg_catalog.clock_timestamp()
, version text not null
);
revoke create on schema laser from public;
