-- laser.demonstrations: verified rewrites the sidecar shows a model as examples (E3's retrieved
-- demonstrations). The pool is the advisor's verified advisories on this database that are at
-- least 1.5x faster on every parameter set and not rejected; it grows with every capture. A caller
-- sees only the statements of roles it is a member of (as pg_stat_statements shows only one's own),
-- so a prompt never carries another role's statement.
create or replace view laser.demonstrations with (security_barrier) as
select a.normalized_sql as original_sql
     , a.rewritten_sql
     , a.speedup_min as speedup
     , 'advisory ' || a.id || ' (' || a.backend || ')' as source
     , a.role
     , a.status
     , a.updated_at
  from laser.advisories a
  join pg_catalog.pg_roles r on r.rolname = a.role   -- a dropped role's statements drop out
 where a.database = pg_catalog.current_database()
   and a.status in ('pending', 'approved')
   and a.speedup_min >= 1.5
   and pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER');

comment on view laser.demonstrations is
'Verified rewrites (advisories at least 1.5x faster, not rejected or stale) of statements by roles you are a member of: the examples the sidecar retrieves for model prompts.';

grant select on laser.demonstrations to public;
