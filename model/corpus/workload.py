"""Seeds from a workload: the statements pg_stat_statements has seen in the target database.

pg_stat_statements keeps each statement's normalized text, every constant replaced by `$n`. A
seed needs constants, so each `$n` gets one typical value of the column it is compared with, from
the planner's statistics (`sidecar.verify.parameters.choose`, the values the sidecar verifies
parameterized statements with) and is bound as a quoted literal (`relations.bind`). Statements the
verifier ran itself (its marker comment) and LASER's own calls are left out. Only the statements
of the database the session is connected to are read.
"""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from sidecar.verify import GuardError, guard
from sidecar.verify.parameters import ParameterError, choose
from sidecar.verify.relations import bind
from sidecar.verify.session import MARKER, ReadOnlySession


class WorkloadError(Exception):
    """The workload cannot be read (pg_stat_statements missing or not readable)."""


@dataclass(frozen=True)
class WorkloadStatement:
    name: str
    """``pgss_`` and the statement's queryid in hex."""
    sql: str
    """The statement with its `$n` bound to literal values."""
    mean_ms: float
    calls: int


_STATEMENTS = """
SELECT s.queryid, s.query, sum(s.calls)::bigint AS calls, sum(s.total_exec_time) / sum(s.calls) AS mean_ms
  FROM {pgss}.pg_stat_statements AS s
 WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND s.toplevel AND s.calls > 0
   AND s.query ~* '^[[:space:](]*(select|with)[[:>:]]'
   AND position(%(marker)s IN s.query) = 0
   AND s.query !~* '(laser_rewrite|laser_verify|laser\\.|pg_stat_statements|pg_catalog\\.|information_schema\\.)'
 GROUP BY s.queryid, s.query
HAVING sum(s.total_exec_time) / sum(s.calls) >= %(min_mean_ms)s
 ORDER BY sum(s.total_exec_time) DESC
 LIMIT %(limit)s
"""


def statements(session: ReadOnlySession, limit: int, min_mean_ms: float = 0.0
               ) -> tuple[list[WorkloadStatement], list[tuple[str, str]]]:
    """Up to ``limit`` statements of this database by total execution time, with their constants
    bound; and (name, reason) for those that could not be made seeds."""
    conn = session.connection
    row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_catalog.pg_extension "
                       "WHERE extname = 'pg_stat_statements'").fetchone()
    if row is None:
        raise WorkloadError("pg_stat_statements is not installed in this database: CREATE EXTENSION "
                            "pg_stat_statements (the server must preload it: shared_preload_libraries)")
    query = sql.SQL(_STATEMENTS).format(pgss=sql.Identifier(row[0]))
    try:
        rows = conn.execute(query, {"marker": MARKER.strip(), "min_mean_ms": min_mean_ms, "limit": limit}).fetchall()
    except psycopg.Error as exc:
        conn.rollback()
        raise WorkloadError(f"pg_stat_statements cannot be read: {exc}".strip()) from None
    kept: list[WorkloadStatement] = []
    skipped: list[tuple[str, str]] = []
    for queryid, text, calls, mean_ms in rows:
        name = f"pgss_{queryid & 0xFFFF_FFFF_FFFF_FFFF:016x}"
        try:
            statement = guard(text)
            values = choose(session, statement.tree)
        except GuardError as exc:
            skipped.append((name, f"refused: {exc}"))
            continue
        except ParameterError as exc:
            skipped.append((name, str(exc)))
            continue
        bound = bind(statement.tree, {n: chosen.value for n, chosen in values.items()}) if values else statement.text
        kept.append(WorkloadStatement(name, bound, float(mean_ms), int(calls)))
    return kept, skipped
