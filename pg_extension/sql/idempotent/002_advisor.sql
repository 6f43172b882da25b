-- The advisor: capture and revalidation (plpython3u procedures that call the sidecar), the
-- advisories' status machine and history, review functions, views, scheduling, grants.

-- Status machine: pending → approved | rejected; approved → stale → pending. Enforced for every
-- writer (review functions, the advisor, a superuser's UPDATE); provenance is immutable.
create or replace function laser.advisory_guard() returns trigger
as $plpgsql$
declare
  allowed constant jsonb := '{"pending": ["approved", "rejected"], "approved": ["stale"], "stale": ["pending"], "rejected": []}';
begin
  if tg_op = 'INSERT' then
    if new.status <> 'pending' then
      raise exception using errcode = '55000',
        message = format('laser: a new advisory starts as pending, not %s', new.status);
    end if;
    return new;
  end if;
  if new.id <> old.id or new.database <> old.database or new.query_hash <> old.query_hash
     or new.normalized_sql <> old.normalized_sql or new.rewritten_sql <> old.rewritten_sql
     or new.created_at <> old.created_at then
    raise exception using errcode = '55000',
      message = format('laser: advisory %s: what was verified (statement, rewrite, database) cannot be changed', old.id);
  end if;
  if new.status is distinct from old.status then
    if not (allowed -> old.status) ? new.status then
      raise exception using errcode = '55000',
        message = format('laser: advisory %s is %s; it cannot become %s', old.id, old.status, new.status),
        hint = case old.status
          when 'pending' then 'a pending advisory is approved (laser.approve) or rejected (laser.reject)'
          when 'approved' then 'an approved advisory only becomes stale, when laser.revalidate() finds it no longer wins'
          when 'stale' then 'a stale advisory becomes pending again when laser.revalidate() verifies it again'
          else 'a rejected advisory is final' end;
    end if;
    if new.status in ('approved', 'rejected') then
      new.reviewer := session_user;
      new.reviewed_at := pg_catalog.clock_timestamp();
    end if;
  end if;
  new.updated_at := pg_catalog.clock_timestamp();
  return new;
end
$plpgsql$
language plpgsql
set search_path = pg_catalog, pg_temp;

create or replace function laser.advisory_record() returns trigger
as $plpgsql$
begin
  if tg_op = 'INSERT' or new.status is distinct from old.status then
    insert into laser.advisory_history (advisory_id, from_status, to_status, changed_by, reason)
    values (new.id, case when tg_op = 'UPDATE' then old.status end, new.status, session_user,
            case when new.status in ('approved', 'rejected') then new.note else new.status_reason end);
  end if;
  return null;
end
$plpgsql$
language plpgsql security definer
set search_path = pg_catalog, pg_temp;

drop trigger if exists advisory_guard on laser.advisories;
create trigger advisory_guard before insert or update on laser.advisories
  for each row execute function laser.advisory_guard();
drop trigger if exists advisory_record on laser.advisories;
create trigger advisory_record after insert or update on laser.advisories
  for each row execute function laser.advisory_record();

-- Review: laser_reviewer members approve or reject pending advisories, with a note.
create or replace function laser.review(advisory bigint, decision text, reviewer_note text)
returns table (advisory_id bigint, status text, reviewer name, reviewed_at timestamptz, review_note text)
as $plpgsql$
declare
  current_status text;
begin
  if advisory is null then
    raise exception using errcode = '22004', message = 'laser: advisory id is NULL';
  end if;
  select a.status into current_status from laser.advisories a where a.id = advisory for update;
  if not found then
    raise exception using errcode = 'P0002', message = format('laser: no advisory with id %s', advisory);
  end if;
  if current_status <> 'pending' then
    raise exception using errcode = '55000',
      message = format('laser: advisory %s is %s, not pending; only pending advisories can be %s',
                       advisory, current_status, decision),
      hint = 'see laser.pending_advisories';
  end if;
  return query
    update laser.advisories a
       set status = decision, note = coalesce(reviewer_note, '')
     where a.id = advisory
    returning a.id, a.status, a.reviewer, a.reviewed_at, a.note;
end
$plpgsql$
language plpgsql security definer
set search_path = pg_catalog, pg_temp;

create or replace function laser.approve(advisory bigint, note text default '')
returns table (advisory_id bigint, status text, reviewer name, reviewed_at timestamptz, review_note text)
as $sql$ select * from laser.review(advisory, 'approved', note) $sql$
language sql security definer
set search_path = pg_catalog, pg_temp;

create or replace function laser.reject(advisory bigint, note text default '')
returns table (advisory_id bigint, status text, reviewer name, reviewed_at timestamptz, review_note text)
as $sql$ select * from laser.review(advisory, 'rejected', note) $sql$
language sql security definer
set search_path = pg_catalog, pg_temp;

comment on function laser.approve(bigint, text) is
'Approve a pending advisory (laser_reviewer members). The transition is recorded in laser.advisory_history.';
comment on function laser.reject(bigint, text) is
'Reject a pending advisory (laser_reviewer members); capture will not suggest this statement again.';

-- Capture: slow statements from pg_stat_statements (all databases) to the sidecar; verified
-- rewrites become pending advisories. Commits after each statement: CALL it outside a transaction.
create or replace procedure laser._capture(
  min_mean_ms double precision, min_calls bigint, min_share double precision, top_n integer,
  budget_s integer, retry_after interval, databases text[])
as $python$
@PYTHON_PATH_PREAMBLE@
from laser_db import advisor
advisor.capture(plpy, advisor.CaptureSettings(
    min_mean_ms=min_mean_ms, min_calls=min_calls, min_share=min_share, top_n=top_n,
    budget_s=budget_s, retry_after=retry_after, databases=databases))
$python$
language plpython3u;

create or replace procedure laser.capture(
  min_mean_ms double precision default 100,
  min_calls bigint default 1,
  min_share double precision default 0,
  top_n integer default 10,
  budget_s integer default 900,
  retry_after interval default '1 day',
  databases text[] default null)
as $plpgsql$
begin
  if min_mean_ms is null or min_calls is null or min_share is null or top_n is null or budget_s is null
     or retry_after is null then
    raise exception using errcode = '22004', message = 'laser.capture: only databases may be NULL (= all)';
  end if;
  if min_mean_ms < 0 or min_calls < 0 then
    raise exception using errcode = '22023', message = 'laser.capture: min_mean_ms and min_calls must not be negative';
  end if;
  if min_share < 0 or min_share > 1 then
    raise exception using errcode = '22023',
      message = format('laser.capture: min_share is a fraction of all statement time, between 0 and 1; got %s', min_share);
  end if;
  if top_n <= 0 or budget_s <= 0 then
    raise exception using errcode = '22023', message = 'laser.capture: top_n and budget_s must be positive';
  end if;
  if retry_after < interval '0' then
    raise exception using errcode = '22023', message = 'laser.capture: retry_after must not be negative';
  end if;
  if not exists (select from pg_catalog.pg_extension where extname = 'pg_stat_statements') then
    raise exception using errcode = '55000',
      message = 'laser.capture: pg_stat_statements is not installed in this database',
      hint = 'CREATE EXTENSION pg_stat_statements; the server must also load it (shared_preload_libraries)';
  end if;
  call laser._capture(min_mean_ms, min_calls, min_share, top_n, budget_s, retry_after, databases);
end
$plpgsql$
language plpgsql;

comment on procedure laser.capture(double precision, bigint, double precision, integer, integer, interval, text[]) is
'Send slow statements from pg_stat_statements (mean time >= min_mean_ms, calls >= min_calls, share of all statement time >= min_share; the top_n by total time; within budget_s) to the sidecar and record verified rewrites in laser.advisories. Skips statements already advised, and those that did not improve until retry_after (doubling) has passed or their mean time rose by half. One capture at a time; commits per statement.';

-- Revalidation: approved (and stale) advisories measured again; approved ones that no longer win
-- become stale, stale ones that win again become pending.
create or replace procedure laser._revalidate(advisory bigint, budget_s integer)
as $python$
@PYTHON_PATH_PREAMBLE@
from laser_db import advisor
advisor.revalidate(plpy, advisory, budget_s)
$python$
language plpython3u;

create or replace procedure laser.revalidate(advisory bigint default null, budget_s integer default 1800)
as $plpgsql$
declare
  current_status text;
begin
  if budget_s is null or budget_s <= 0 then
    raise exception using errcode = '22023', message = 'laser.revalidate: budget_s must be positive';
  end if;
  if advisory is not null then
    select a.status into current_status from laser.advisories a where a.id = advisory;
    if not found then
      raise exception using errcode = 'P0002', message = format('laser: no advisory with id %s', advisory);
    end if;
    if current_status not in ('approved', 'stale') then
      raise exception using errcode = '55000',
        message = format('laser: advisory %s is %s; only approved and stale advisories are revalidated',
                         advisory, current_status);
    end if;
  end if;
  call laser._revalidate(advisory, budget_s);
end
$plpgsql$
language plpgsql;

comment on procedure laser.revalidate(bigint, integer) is
'Verify approved and stale advisories again (all, or one by id) with their parameter sets: approved ones that are no longer equivalent or faster become stale; stale ones verified again become pending.';

-- Scheduling with pg_cron when it is installed in this database; otherwise say what to run instead.
create or replace function laser.schedule(capture text default '*/15 * * * *',
                                          revalidate text default '30 3 * * *')
returns table (job text, schedule text, command text)
as $plpgsql$
begin
  if not exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    raise exception using errcode = '0A000',
      message = 'laser: pg_cron is not installed in this database, so laser.schedule() cannot create jobs',
      hint = 'install pg_cron (Debian: postgresql-15-cron; shared_preload_libraries = ''pg_cron''; CREATE EXTENSION pg_cron), '
          || 'or run `laser advise --dsn ''dbname=' || current_database() || ''' --every 900` next to the sidecar';
  end if;
  execute 'select cron.schedule_in_database($1, $2, $3, $4)'
    using 'laser-capture', capture, 'CALL laser.capture()', current_database();
  execute 'select cron.schedule_in_database($1, $2, $3, $4)'
    using 'laser-revalidate', revalidate, 'CALL laser.revalidate()', current_database();
  return query values ('laser-capture', capture, 'CALL laser.capture()'),
                      ('laser-revalidate', revalidate, 'CALL laser.revalidate()');
end
$plpgsql$
language plpgsql
set search_path = pg_catalog, pg_temp;

-- What a reviewer looks at first: pending advisories, the most total time saved first.
create or replace view laser.pending_advisories as
select a.id
     , a.database
     , a.role
     , a.calls
     , round(a.mean_exec_ms::numeric, 1) as mean_ms
     , round(a.speedup::numeric, 2) as speedup
     , round(a.speedup_min::numeric, 2) as min_speedup
     , jsonb_array_length(a.parameter_sets) as parameter_sets
     , round((a.mean_exec_ms * (1 - 1 / a.speedup))::numeric, 1) as saved_ms_per_call
     , round((a.calls * a.mean_exec_ms * (1 - 1 / a.speedup) / 1000)::numeric, 1) as est_saved_s
     , a.backend
     , a.created_at
     , left(regexp_replace(a.normalized_sql, '\s+', ' ', 'g'), 72) as statement
  from laser.advisories a
 where a.status = 'pending'
 order by a.calls * a.mean_exec_ms * (1 - 1 / a.speedup) desc, a.id;

comment on view laser.pending_advisories is
'Pending advisories, ordered by estimated total time saved (calls x time saved per call, from pg_stat_statements at capture time).';

-- Before and after, pretty-printed, and a unified diff (\x in psql, or copy into a diff tool).
create or replace view laser.advisory_diff as
select a.id, a.status, a.database, round(a.speedup::numeric, 2) as speedup,
       a.pretty_before as before, a.pretty_after as after, a.diff
  from laser.advisories a
 order by a.id;

comment on view laser.advisory_diff is 'Each advisory''s statement and rewrite, pretty-printed, with a unified diff.';

revoke all on function laser.review(bigint, text, text), laser.approve(bigint, text), laser.reject(bigint, text)
  from public;
grant execute on function laser.approve(bigint, text), laser.reject(bigint, text) to laser_reviewer;
revoke all on procedure laser.capture(double precision, bigint, double precision, integer, integer, interval, text[]),
              laser._capture(double precision, bigint, double precision, integer, integer, interval, text[]),
              laser.revalidate(bigint, integer), laser._revalidate(bigint, integer) from public;
revoke all on function laser.schedule(text, text), laser.advisory_guard(), laser.advisory_record() from public;
grant select on laser.advisories, laser.advisory_history, laser.capture_runs, laser.capture_attempts,
                laser.pending_advisories, laser.advisory_diff to laser_reviewer;
