-- laser_rewrite / laser_rewrite_evidence / laser_verify.
-- Re-run on every install and upgrade (create or replace). The plpython3u body is a few lines
-- calling laser_db; the SQL wrappers turn its answer into a value, a NOTICE or a clean ERROR.

create or replace function laser.sidecar_call(method text, query text, candidate text default null)
returns jsonb
as $python$
@PYTHON_PATH_PREAMBLE@
from laser_db import functions
return functions.call(plpy, method, query, candidate)
$python$
language plpython3u volatile parallel unsafe security invoker
set search_path = pg_catalog, pg_temp;

comment on function laser.sidecar_call(text, text, text) is
'Internal: one call to the LASER sidecar as the current user; {"ok", "result" | "message", "sqlstate", "hint"}.';

create or replace function laser.raise_unless_ok(answer jsonb) returns jsonb
as $plpgsql$
begin
  if (answer->>'ok')::boolean then
    if answer->>'notice' is not null then
      raise notice '%', answer->>'notice';
    end if;
    return answer->'result';
  end if;
  if coalesce(answer->>'hint', '') = '' then
    raise exception using message = answer->>'message', errcode = answer->>'sqlstate';
  end if;
  raise exception using message = answer->>'message', errcode = answer->>'sqlstate', hint = answer->>'hint';
end
$plpgsql$
language plpgsql volatile security invoker
set search_path = pg_catalog, pg_temp;

create or replace function @extschema@.laser_rewrite(query text) returns text
as $sql$
  select case when (r->>'verified')::boolean then r->>'rewritten_sql' else query end
  from laser.raise_unless_ok(laser.sidecar_call('rewrite', query)) as r
$sql$
language sql volatile parallel unsafe security invoker
set search_path = pg_catalog, pg_temp;

comment on function @extschema@.laser_rewrite(text) is
'The best verified rewrite of a read-only query (the original text, with a NOTICE saying why, when none is verified faster). Settings: laser.sidecar_address, laser.timeout_ms.';

create or replace function @extschema@.laser_rewrite_evidence(query text) returns jsonb
as $sql$
  select laser.raise_unless_ok(laser.sidecar_call('rewrite', query))
$sql$
language sql volatile parallel unsafe security invoker
set search_path = pg_catalog, pg_temp;

comment on function @extschema@.laser_rewrite_evidence(text) is
'The evidence behind laser_rewrite(query): latencies, speedup, equivalence check, plan change and every attempt (answered from the sidecar''s recent measurements when it has them).';

create or replace function @extschema@.laser_verify(original text, candidate text) returns jsonb
as $sql$
  select laser.raise_unless_ok(laser.sidecar_call('verify', original, candidate))
$sql$
language sql volatile parallel unsafe security invoker
set search_path = pg_catalog, pg_temp;

comment on function @extschema@.laser_verify(text, text) is
'Verify your own rewrite: is candidate equivalent to original, and how much faster? The verifier outcome as jsonb.';

create or replace function @extschema@.laser_model_info() returns jsonb
as $sql$
  select laser.raise_unless_ok(laser.sidecar_call('model_info', null))
$sql$
language sql volatile parallel unsafe security invoker
set search_path = pg_catalog, pg_temp;

comment on function @extschema@.laser_model_info() is
'What the sidecar writes candidates with: backend (rules, transformers, vllm), model directory, library versions, device, self-correction rounds, demonstrations per prompt.';

grant usage on schema laser to public;
