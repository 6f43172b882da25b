-- 003: verified wins of laser_rewrite, kept as demonstrations for model prompts.
-- laser_rewrite (running as the caller) records each rewrite verified at least 1.5x faster. Row
-- level security lets a role record only rows in its own name, so a role can only ever put a
-- demonstration in front of itself and roles that are members of it (see laser.demonstrations).
create table laser.rewrite_wins
( id bigint generated always as identity primary key
, database name not null default pg_catalog.current_database()
, role name not null default current_user
, original_sql text not null
, rewritten_sql text not null
, speedup double precision not null check (speedup >= 1.5)
, source text not null default ''
, created_at timestamptz not null default pg_catalog.clock_timestamp()
);
create unique index rewrite_wins_statement on laser.rewrite_wins (database, role, pg_catalog.md5(original_sql));

alter table laser.rewrite_wins enable row level security;
create policy rewrite_wins_own on laser.rewrite_wins for insert to public
  with check (role = current_user and database = pg_catalog.current_database());

revoke all on laser.rewrite_wins from public;
grant insert on laser.rewrite_wins to public;
