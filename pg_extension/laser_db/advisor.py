"""The advisor, run inside the database by the laser.capture() and laser.revalidate() procedures.

capture: slow statements from pg_stat_statements (every database of the cluster) go to the
sidecar one at a time, with parameter sets sampled from the server log when it has them; each
verified rewrite becomes a *pending* row of laser.advisories. Every statement tried leaves a row
in laser.capture_attempts; a statement that did not improve is skipped until its backoff has
passed (doubling each time) or its mean time has risen by half.

revalidate: approved advisories are verified again with the parameter sets they were verified
with; those that no longer win (data or statistics changed) become *stale*, stale ones that win
again become *pending* for another review.

Both commit after each statement (CALL them outside a transaction block), so a run cut short by
a sidecar failure, a budget or a database restart keeps what it finished; the next run marks the
cut-short one "interrupted" and goes on. One run of each kind at a time (a session-level advisory
lock); an overlapping run records itself as "skipped" and returns. Advisory rows are written in
one statement after the sidecar answered, so there are never partial rows, and a unique key
(database, md5 of the statement) keeps two captures from advising the same statement twice.

Nothing here imports pglast or the sidecar: this runs under the server's own Python.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from laser_db import client, functions, logsamples

LOCK_CLASS = 0x4C415345  # "LASE"
LOCK_CAPTURE, LOCK_REVALIDATE = 1, 2
MIN_PARAMETER_SETS = 3
LOG_TAIL_BYTES = 8 * 1024 * 1024
MAX_BACKOFF = "30 days"
_PLACEHOLDER = re.compile(r"\$\d+")


class AdvisorError(Exception):
    """A run cannot start; the message says why."""


@dataclass(frozen=True)
class CaptureSettings:
    min_mean_ms: float = 100.0
    min_calls: int = 1
    min_share: float = 0.0
    top_n: int = 10
    budget_s: int = 900
    retry_after: str = "1 day"
    databases: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"min_mean_ms": self.min_mean_ms, "min_calls": self.min_calls, "min_share": self.min_share,
                "top_n": self.top_n, "budget_s": self.budget_s, "retry_after": str(self.retry_after),
                "databases": self.databases}


def _one(plpy: Any, query: str, types: list[str] | None = None, args: list[Any] | None = None) -> dict[str, Any] | None:
    rows = _rows(plpy, query, types, args)
    return rows[0] if rows else None


def _rows(plpy: Any, query: str, types: list[str] | None = None, args: list[Any] | None = None) -> list[dict[str, Any]]:
    if not types:
        return list(plpy.execute(query))
    return list(plpy.execute(plpy.prepare(query, types), args))


def _start_commits(plpy: Any, what: str) -> None:
    """Commit once before anything else, so a CALL inside a transaction block fails cleanly at once."""
    try:
        plpy.commit()
    except plpy.SPIError:
        raise plpy.Error(f"laser.{what}() commits after each statement, so it cannot run inside a transaction "
                         f"block: CALL laser.{what}() on its own (psql's default autocommit)") from None


def _try_lock(plpy: Any, key: int) -> bool:
    row = _one(plpy, "select pg_catalog.pg_try_advisory_lock($1, $2) as got", ["int4", "int4"], [LOCK_CLASS, key])
    return bool(row and row["got"])


def _unlock(plpy: Any, key: int) -> None:
    _rows(plpy, "select pg_catalog.pg_advisory_unlock($1, $2)", ["int4", "int4"], [LOCK_CLASS, key])


def _start_run(plpy: Any, kind: str, settings: dict[str, Any], status: str = "running", message: str = "") -> int:
    row = _one(plpy, """
        insert into laser.capture_runs (kind, status, settings, message, backend_start, finished_at)
        select $1, $2, $3::jsonb, $4, a.backend_start, case when $2 = 'running' then null else clock_timestamp() end
          from pg_catalog.pg_stat_activity a where a.pid = pg_catalog.pg_backend_pid()
        returning id""", ["text", "text", "text", "text"], [kind, status, json.dumps(settings), message])
    assert row is not None
    return int(row["id"])


def _mark_interrupted(plpy: Any, kind: str) -> int:
    """Runs of `kind` still "running" while we hold its lock were cut short (restart, crash, cancel)."""
    rows = _rows(plpy, """
        update laser.capture_runs set status = 'interrupted', finished_at = clock_timestamp(),
               message = 'cut short (database restart, cancel or crash); the next run went on'
         where kind = $1 and status = 'running' returning id""", ["text"], [kind])
    ids = [int(r["id"]) for r in rows]
    if ids:  # only the attempts of those runs: a revalidation must not touch a running capture's
        _rows(plpy, """
            update laser.capture_attempts set outcome = 'interrupted', finished_at = clock_timestamp(),
                   message = 'the run was cut short while the sidecar worked on this statement', retry_after = null
             where outcome = 'running' and run_id = any($1::int8[])""", ["int8[]"], [ids])
    return len(ids)


def _finish_run(plpy: Any, run_id: int, status: str, counts: dict[str, int], message: str) -> None:
    _rows(plpy, """
        update laser.capture_runs set status = $2, finished_at = clock_timestamp(), considered = $3, advised = $4,
               no_improvement = $5, failed = $6, message = $7 where id = $1""",
          ["int8", "text", "int4", "int4", "int4", "int4", "text"],
          [run_id, status, counts["considered"], counts["advised"], counts["no_improvement"], counts["failed"],
              message])


def _stat_statements_schema(plpy: Any) -> str:
    row = _one(plpy, "select extnamespace::regnamespace::text as schema from pg_catalog.pg_extension"
                     " where extname = 'pg_stat_statements'")
    if row is None:
        raise AdvisorError("pg_stat_statements is not installed in this database: CREATE EXTENSION "
                           "pg_stat_statements (the server must preload it: shared_preload_libraries)")
    return str(row["schema"])


# The statements worth a try: read-only by their first word (the sidecar's guard decides for real),
# not LASER's own calls, above the thresholds, not advised yet, not in backoff.
_CANDIDATES = """
with s as (
  select s.dbid, s.userid, s.queryid, s.query, s.calls, s.total_exec_time
    from {pgss}.pg_stat_statements s
   where s.toplevel and s.calls > 0
), grand as (
  select greatest(sum(total_exec_time), 1e-9) as total from s
), per_statement as (
  select d.datname::text as database, s.queryid, s.query, r.rolname::text as role,
         row_number() over (partition by s.dbid, s.queryid order by s.total_exec_time desc) as pick,
         sum(s.calls) over (partition by s.dbid, s.queryid) as calls,
         sum(s.total_exec_time) over (partition by s.dbid, s.queryid) as total_exec_ms
    from s
    join pg_catalog.pg_database d on d.oid = s.dbid
    join pg_catalog.pg_roles r on r.oid = s.userid
   where d.datallowconn and not d.datistemplate
     and ($5::text[] is null or d.datname = any($5::text[]))
     and s.query ~* '^[[:space:](]*(select|with|values|table)[[:>:]]'
     and s.query !~* '(laser_rewrite|laser_verify|laser\\.|laser-verifier|pg_stat_statements|pg_catalog\\.)'
)
select p.database, p.queryid, p.query, md5(p.query) as query_hash, p.role, p.calls, p.total_exec_ms,
       p.total_exec_ms / p.calls as mean_exec_ms
  from per_statement p, grand g
 where p.pick = 1
   and p.total_exec_ms / p.calls >= $1
   and p.calls >= $2
   and p.total_exec_ms / g.total >= $3
   and not exists (select from laser.advisories a
                    where a.database = p.database and (a.query_hash = md5(p.query) or a.queryid = p.queryid))
   and not exists (select from (select t.retry_after, t.mean_exec_ms from laser.capture_attempts t
                                 where t.database = p.database and t.query_hash = md5(p.query)
                                 order by t.started_at desc limit 1) last
                    where last.retry_after > clock_timestamp()
                      and p.total_exec_ms / p.calls < 1.5 * last.mean_exec_ms)
 order by p.total_exec_ms desc
 limit $4
"""


def _log_tail(plpy: Any) -> tuple[str | None, str]:
    """The tail of the server log (pg_current_logfile(), or the laser.log_file setting), and where it came from."""
    try:
        row = _one(plpy, "select coalesce(pg_catalog.pg_current_logfile('stderr'),"
                         " nullif(current_setting('laser.log_file', true), '')) as path")
        path = row["path"] if row else None
        if not path:
            return None, "no server log to sample parameters from (no logging_collector, laser.log_file unset)"
        size = _one(plpy, "select size from pg_catalog.pg_stat_file($1, true)", ["text"], [path])
        if size is None or size["size"] is None:
            return None, f"the server log {path} cannot be read"
        offset = max(int(size["size"]) - LOG_TAIL_BYTES, 0)
        data = _one(plpy, "select pg_catalog.pg_read_binary_file($1, $2, $3, true) as data",
                    ["text", "int8", "int8"], [path, offset, LOG_TAIL_BYTES])
    except plpy.SPIError as exc:  # e.g. no pg_read_server_files privilege
        return None, f"the server log cannot be read: {exc}"
    raw = data["data"] if data else None
    if raw is None:
        return None, f"the server log {path} cannot be read"
    return bytes(raw).decode("utf-8", errors="replace"), str(path)


def _backoff_attempt(plpy: Any, attempt_id: int, outcome: str, message: str, retry_after: str) -> None:
    """Close an attempt that did not advise: retry after `retry_after` doubled per earlier such attempt."""
    _rows(plpy, """
        update laser.capture_attempts t set outcome = $2, message = $3, finished_at = clock_timestamp(),
               retry_after = clock_timestamp() + least($4::interval * power(2, (
                   select count(*) from laser.capture_attempts e
                    where e.database = t.database and e.query_hash = t.query_hash and e.id < t.id
                      and e.outcome in ('no_improvement', 'error'))), $5::interval)
         where t.id = $1""", ["int8", "text", "text", "text", "text"],
          [attempt_id, outcome, message[:4000], str(retry_after), MAX_BACKOFF])


def _close_attempt(plpy: Any, attempt_id: int, outcome: str, message: str, advisory_id: int | None = None) -> None:
    _rows(plpy, """update laser.capture_attempts set outcome = $2, message = $3, advisory_id = $4,
                          finished_at = clock_timestamp(), retry_after = null where id = $1""",
          ["int8", "text", "text", "int8"], [attempt_id, outcome, message[:4000], advisory_id])


def _set_values(entry: dict[str, Any]) -> dict[int, str | None]:
    return {int(k.lstrip("$")): v.get("value") for k, v in entry.get("parameters", {}).items()}


def _insert_advisory(plpy: Any, statement: dict[str, Any], evidence: dict[str, Any]) -> int | None:
    """The pending advisory, in one statement; None when another capture advised it meanwhile."""
    sets = evidence.get("parameter_sets") or []
    per_set = [{k: v for k, v in entry.items() if k != "parameters"} for entry in sets]
    stored_sets = [{"values": {str(n): v for n, v in _set_values(entry).items()},
                    "sources": {k: v.get("source", "") for k, v in entry.get("parameters", {}).items()}}
                   for entry in sets]
    plan = evidence.get("plan") or {}
    pretty = evidence.get("pretty") or {}
    row = _one(plpy, """
        insert into laser.advisories
          (database, queryid, query_hash, role, normalized_sql, original_sql, rewritten_sql, pretty_before,
           pretty_after, diff, parameter_sets, per_set, backend, model, backend_version, speedup, speedup_min,
           original_ms, rewrite_ms, plan_before, plan_after, outcome, calls, mean_exec_ms, total_exec_ms,
           status_reason)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13, $14, $15, $16, $17, $18, $19,
                $20::jsonb, $21::jsonb, $22::jsonb, $23, $24, $25, $26)
        on conflict (database, query_hash) do nothing
        returning id""",
        ["name", "int8", "text", "name", "text", "text", "text", "text", "text", "text", "text", "text", "text",
         "text", "text", "float8", "float8", "float8", "float8", "text", "text", "text", "int8", "float8",
         "float8", "text"],
        [statement["database"], statement["queryid"], statement["query_hash"], statement["role"], statement["query"],
         evidence.get("original_example") or statement["query"], evidence["rewritten_sql"],
         pretty.get("before", ""), pretty.get("after", ""), pretty.get("diff", ""),
         json.dumps(stored_sets), json.dumps(per_set), evidence.get("backend", ""), evidence.get("model", ""),
         evidence.get("backend_version", ""), float(evidence["speedup"]),
         float(evidence.get("speedup_min") or evidence["speedup"]), float(evidence["original_ms"]),
         float(evidence["rewrite_ms"]), json.dumps(plan.get("before")), json.dumps(plan.get("after")),
         json.dumps(evidence), statement["calls"], statement["mean_exec_ms"], statement["total_exec_ms"],
         evidence.get("message", "")])
    return int(row["id"]) if row else None


def capture(plpy: Any, settings: CaptureSettings) -> None:
    """laser.capture(): the plpgsql wrapper has checked the arguments."""
    _start_commits(plpy, "capture")
    if not _try_lock(plpy, LOCK_CAPTURE):
        _start_run(plpy, "capture", settings.to_json(), "skipped", "another capture is running")
        plpy.commit()
        plpy.notice("laser: another capture is running; this one did nothing")
        return
    try:
        _capture_locked(plpy, settings)
    finally:
        _unlock(plpy, LOCK_CAPTURE)


def _capture_locked(plpy: Any, settings: CaptureSettings) -> None:
    interrupted = _mark_interrupted(plpy, "capture")
    pgss = _stat_statements_schema(plpy)
    address, timeout_ms, caller = functions.settings(plpy)
    run_id = _start_run(plpy, "capture", settings.to_json())
    plpy.commit()
    deadline = time.monotonic() + settings.budget_s
    counts = {"considered": 0, "advised": 0, "no_improvement": 0, "failed": 0}
    statements = _rows(plpy, _CANDIDATES.format(pgss=pgss), ["float8", "int8", "float8", "int4", "text[]"],
                       [settings.min_mean_ms, settings.min_calls, settings.min_share, settings.top_n,
                        settings.databases])
    log_text, log_source = (None, "")
    if any(_PLACEHOLDER.search(s["query"]) for s in statements):
        log_text, log_source = _log_tail(plpy)
    status, notes = "finished", []
    if interrupted:
        notes.append(f"marked {interrupted} earlier run(s) interrupted")
    for statement in statements:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 1000:
            notes.append(f"budget of {settings.budget_s} s reached")
            break
        counts["considered"] += 1
        attempt = _one(plpy, """
            insert into laser.capture_attempts
              (run_id, database, queryid, query_hash, role, query, calls, mean_exec_ms, total_exec_ms)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id""",
            ["int8", "name", "int8", "text", "name", "text", "int8", "float8", "float8"],
            [run_id, statement["database"], statement["queryid"], statement["query_hash"], statement["role"],
             statement["query"], statement["calls"], statement["mean_exec_ms"], statement["total_exec_ms"]])
        assert attempt is not None
        attempt_id = int(attempt["id"])
        plpy.commit()  # the attempt is on record before the sidecar is asked

        sets: list[dict[int, str | None]] = []
        if log_text and _PLACEHOLDER.search(statement["query"]):
            sets = logsamples.samples(statement["query"], log_text, limit=5)
        target = client.Caller(statement["database"], caller.login_role, statement["role"], caller.server_id,
                               caller.server)
        try:
            response = client.rewrite(
                address, statement["query"], target, min(timeout_ms, remaining_ms),
                sets=client.parameter_sets(sets, f"server log ({log_source})"),
                min_parameter_sets=MIN_PARAMETER_SETS, no_cache=True)
        except client.SidecarError as exc:
            if exc.sqlstate == "08006":  # the sidecar is down: stop here, retry everything next run
                _close_attempt(plpy, attempt_id, "sidecar_unavailable", exc.message)
                _rows(plpy, "update laser.capture_attempts set retry_after = clock_timestamp() where id = $1",
                      ["int8"], [attempt_id])
                counts["failed"] += 1
                status = "sidecar_unavailable"
                notes.append(exc.message)
                plpy.commit()
                break
            _backoff_attempt(plpy, attempt_id, "error", exc.message, settings.retry_after)
            counts["failed"] += 1
            plpy.commit()
            continue
        evidence = json.loads(response.evidence_json)
        evidence.setdefault("message", response.message)
        if response.status == "improved":
            advisory_id = _insert_advisory(plpy, statement, evidence)
            if advisory_id is None:
                _close_attempt(plpy, attempt_id, "advised", "already advised by a concurrent capture")
            else:
                _close_attempt(plpy, attempt_id, "advised", response.message, advisory_id)
                counts["advised"] += 1
        else:
            _backoff_attempt(plpy, attempt_id, "no_improvement", response.message, settings.retry_after)
            counts["no_improvement"] += 1
        plpy.commit()

    message = "; ".join(notes)
    _finish_run(plpy, run_id, status, counts, message)
    plpy.commit()
    plpy.notice(f"laser: capture run {run_id}: {counts['considered']} statement(s) tried, {counts['advised']} "
                f"advised, {counts['no_improvement']} without a verified improvement, {counts['failed']} failed"
                + (f" ({message})" if message else ""))


def _stored_sets(stored: Any) -> list[dict[int, str | None]]:
    sets = json.loads(stored) if isinstance(stored, str) else (stored or [])
    return [{int(n): v for n, v in entry.get("values", {}).items()} for entry in sets]


def revalidate(plpy: Any, advisory: int | None, budget_s: int) -> None:
    """laser.revalidate(): the plpgsql wrapper has checked the advisory and the budget."""
    _start_commits(plpy, "revalidate")
    if not _try_lock(plpy, LOCK_REVALIDATE):
        _start_run(plpy, "revalidate", {"advisory": advisory}, "skipped", "another revalidation is running")
        plpy.commit()
        plpy.notice("laser: another revalidation is running; this one did nothing")
        return
    try:
        _revalidate_locked(plpy, advisory, budget_s)
    finally:
        _unlock(plpy, LOCK_REVALIDATE)


def _revalidate_locked(plpy: Any, advisory: int | None, budget_s: int) -> None:
    _mark_interrupted(plpy, "revalidate")
    address, timeout_ms, caller = functions.settings(plpy)
    run_id = _start_run(plpy, "revalidate", {"advisory": advisory, "budget_s": budget_s})
    plpy.commit()
    deadline = time.monotonic() + budget_s
    rows = _rows(plpy, """
        select id, status, database, role, normalized_sql, rewritten_sql, parameter_sets::text as parameter_sets
          from laser.advisories where status in ('approved', 'stale') and ($1::int8 is null or id = $1)
         order by id""", ["int8"], [advisory])
    counts = {"considered": 0, "advised": 0, "no_improvement": 0, "failed": 0}
    status, notes = "finished", []
    for row in rows:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 1000:
            notes.append(f"budget of {budget_s} s reached")
            break
        counts["considered"] += 1
        sets = _stored_sets(row["parameter_sets"])
        target = client.Caller(row["database"], caller.login_role, row["role"], caller.server_id, caller.server)
        try:
            verdict = client.verify(address, row["normalized_sql"], row["rewritten_sql"], target,
                                    min(timeout_ms, remaining_ms),
                                    sets=client.parameter_sets(sets, "the advisory's parameter sets"),
                                    min_parameter_sets=MIN_PARAMETER_SETS if sets else 0)
        except client.SidecarError as exc:
            if exc.sqlstate == "08006":
                status = "sidecar_unavailable"
                notes.append(exc.message)
                counts["failed"] += 1
                break
            # The statement or its rewrite no longer runs as verified (a table changed, a privilege went).
            outcome = {"status": "error", "detail": exc.message}
        else:
            outcome = json.loads(verdict.outcome.evidence_json)
        wins = outcome.get("status") == "faster"
        summary = {"status": outcome.get("status"), "detail": outcome.get("detail", ""),
                   "speedup": outcome.get("speedup"), "parameter_sets": outcome.get("evidence",
                       {}).get("parameter_sets")}
        new_status = row["status"]
        if row["status"] == "approved" and not wins:
            new_status, reason = "stale", f"revalidation: {outcome.get('status')}: {outcome.get('detail', '')}"
            counts["no_improvement"] += 1
        elif row["status"] == "stale" and wins:
            new_status, reason = "pending", f"verified again: {float(outcome.get('speedup') or 0):.2f}x faster"
            counts["advised"] += 1
        else:
            reason = ""
            counts["advised" if wins else "no_improvement"] += 1
        # Only if nobody changed it meanwhile (a reviewer, another session): no lost updates.
        _rows(plpy, """
            update laser.advisories set status = $3, validated_at = clock_timestamp(), validation = $4::jsonb,
                   status_reason = case when $3 <> $2 then $5 else status_reason end
             where id = $1 and status = $2""",
              ["int8", "text", "text", "text", "text"],
              [row["id"], row["status"], new_status, json.dumps(summary, default=str), reason[:4000]])
        plpy.commit()
    message = "; ".join(notes)
    _finish_run(plpy, run_id, status, counts, message)
    plpy.commit()
    plpy.notice(f"laser: revalidated {counts['considered']} advisory(ies): {counts['advised']} still win, "
                f"{counts['no_improvement']} do not, {counts['failed']} failed" + (f" ({message})" if message else ""))
