-- 002: the advisor's tables: capture runs and attempts, advisories, their status history.

-- Reviewers may read advisories and approve or reject them; nothing else (grants in 002_advisor idempotent).
do $roles$ begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'laser_reviewer') then
    create role laser_reviewer nologin;
  end if;
end $roles$;

-- One row per run of laser.capture(): what it looked at and what came of it.
create table laser.capture_runs
( id bigint generated always as identity primary key
, kind text not null default 'capture' check (kind in ('capture', 'revalidate'))
, started_at timestamptz not null default pg_catalog.clock_timestamp()
, finished_at timestamptz
, status text not null default 'running'
    check (status in ('running', 'finished', 'interrupted', 'sidecar_unavailable', 'skipped'))
, backend_pid integer not null default pg_catalog.pg_backend_pid()
, backend_start timestamptz
, settings jsonb not null default '{}'
, considered integer not null default 0
, advised integer not null default 0
, no_improvement integer not null default 0
, failed integer not null default 0
, message text not null default ''
);

-- One row per statement sent to the sidecar (or refused before that); the memory that lets
-- capture skip statements known not to improve until their backoff has passed.
create table laser.capture_attempts
( id bigint generated always as identity primary key
, run_id bigint references laser.capture_runs (id) on delete set null
, database name not null
, queryid bigint
, query_hash text not null
, role name not null
, query text not null
, calls bigint not null
, mean_exec_ms double precision not null
, total_exec_ms double precision not null
, started_at timestamptz not null default pg_catalog.clock_timestamp()
, finished_at timestamptz
, outcome text not null default 'running'
    check (outcome in ('running', 'advised', 'no_improvement', 'error', 'sidecar_unavailable', 'interrupted'))
, message text not null default ''
, parameter_sets integer not null default 0
, retry_after timestamptz
, advisory_id bigint
);
create index capture_attempts_statement on laser.capture_attempts (database, query_hash, started_at desc);

-- A verified rewrite of one captured statement, with its provenance and evidence.
create table laser.advisories
( id bigint generated always as identity primary key
, database name not null
, queryid bigint
, query_hash text not null                 -- md5 of the normalized text
, role name not null                       -- verified with this role's privileges (the statement's user)
, normalized_sql text not null             -- pg_stat_statements' text, constants as $n
, original_sql text not null               -- one executable example: the first parameter set bound
, rewritten_sql text not null              -- the rewrite, with the same $n as normalized_sql
, pretty_before text not null default ''
, pretty_after text not null default ''
, diff text not null default ''            -- unified diff of the two pretty texts
, parameter_sets jsonb not null default '[]'   -- the values each set used and where they came from
, per_set jsonb not null default '[]'          -- per set: latencies and speedup
, backend text not null
, model text not null default ''
, backend_version text not null default ''
, speedup double precision not null            -- geometric mean over the parameter sets
, speedup_min double precision not null
, original_ms double precision not null
, rewrite_ms double precision not null
, plan_before jsonb
, plan_after jsonb
, outcome jsonb not null                       -- the verifier's evidence, whole
, calls bigint not null                        -- pg_stat_statements at capture time
, mean_exec_ms double precision not null
, total_exec_ms double precision not null
, status text not null default 'pending' check (status in ('pending', 'approved', 'rejected', 'stale'))
, status_reason text not null default ''
, reviewer name
, reviewed_at timestamptz
, note text not null default ''
, validated_at timestamptz
, validation jsonb
, created_at timestamptz not null default pg_catalog.clock_timestamp()
, updated_at timestamptz not null default pg_catalog.clock_timestamp()
, unique (database, query_hash)
);
create index advisories_queryid on laser.advisories (database, queryid);

-- Every status transition, including creation (from_status null).
create table laser.advisory_history
( id bigint generated always as identity primary key
, advisory_id bigint not null references laser.advisories (id) on delete cascade
, from_status text
, to_status text not null
, changed_at timestamptz not null default pg_catalog.clock_timestamp()
, changed_by name not null
, reason text not null default ''
);
create index advisory_history_advisory on laser.advisory_history (advisory_id, id);

revoke all on laser.capture_runs, laser.capture_attempts, laser.advisories, laser.advisory_history from public;
