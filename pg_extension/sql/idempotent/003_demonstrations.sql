-- laser.demonstrations: verified rewrites the sidecar shows a model as examples (E3's retrieved
-- demonstrations), at least 1.5x faster: the advisor's advisories on this database that are not
-- rejected or stale (their slowest parameter set counts), and the wins laser_rewrite recorded. A
-- caller sees only the statements of roles it is a member of (as pg_stat_statements shows only
-- one's own), so a prompt never carries another role's statement, and only a role's own members
-- see what it recorded.
create or replace view laser.demonstrations with (security_barrier) as
select a.normalized_sql as original_sql
     , a.rewritten_sql
     , a.speedup_min as speedup
     , 'advisory ' || a.id || ' (' || a.backend || ')' as source
     , a.role
     , a.updated_at as recorded_at
  from laser.advisories a
  join pg_catalog.pg_roles r on r.rolname = a.role   -- a dropped role's statements drop out
 where a.database = pg_catalog.current_database()
   and a.status in ('pending', 'approved')
   and a.speedup_min >= 1.5
   and pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
union all
select w.original_sql
     , w.rewritten_sql
     , w.speedup
     , 'laser_rewrite (' || w.source || ')'
     , w.role
     , w.created_at
  from laser.rewrite_wins w
  join pg_catalog.pg_roles r on r.rolname = w.role
 where w.database = pg_catalog.current_database()
   and pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER');

comment on view laser.demonstrations is
'Verified rewrites at least 1.5x faster (advisories not rejected or stale, and laser_rewrite''s wins) of statements by roles you are a member of: the examples the sidecar retrieves for model prompts.';

grant select on laser.demonstrations to public;
