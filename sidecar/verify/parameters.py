"""Values for `$n` parameters (normalized text from pg_stat_statements) so both queries can run.

Each parameter takes a typical value of the column it is compared with, from the planner's
statistics: the most common value for `=`/`<>`/`IN`, the median histogram bound for a range
comparison, otherwise any non-NULL value of the column. The values used are part of the evidence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from pglast import ast
from psycopg import sql

from sidecar.verify import relations, tablefacts
from sidecar.verify.session import ReadOnlySession


class ParameterError(Exception):
    """A parameter cannot be given a value from the data."""


@dataclass(frozen=True)
class Chosen:
    value: str | None
    source: str
    """Where the value came from, e.g. "most common value of public.users.country"."""


def choose(session: ReadOnlySession, statement: ast.Node) -> dict[int, Chosen]:
    """A value for every parameter of `statement`; ParameterError names the first one without."""
    numbers = relations.parameter_numbers(statement)
    if not numbers:
        return {}
    found = relations.relations(statement)
    chosen: dict[int, Chosen] = {}
    with session.transaction() as cur:
        oids = tablefacts.resolve(cur, list(found.tables))
        tables = [tablefacts.load(cur, oid) for oid in dict.fromkeys(o for o in oids.values() if o)]
        aliases = {alias: oids.get(name) for alias, name in found.aliases.items()}
        for number in numbers:
            for comparison in (c for c in found.comparisons if c.parameter == number):
                place = tablefacts.locate(comparison.column, aliases, tables)
                if place is None:
                    continue
                table = next(t for t in tables if t.oid == place[0])
                value = _typical_value(cur, table, place[1], ranged=comparison.operator not in ("=", "<>"))
                if value is not None:
                    chosen[number] = value
                    break
            if number not in chosen:
                raise ParameterError(
                    f"parameter ${number} is not compared with a table column, so no value can be "
                    "taken from the data; give the query with literal values instead")
    return chosen


def _typical_value(cur: psycopg.Cursor[Any], table: tablefacts.TableFacts, column: str,
                   ranged: bool) -> Chosen | None:
    label = f"{table.label}.{column}"
    stat = "histogram_bounds" if ranged else "most_common_vals"
    cur.execute(
        sql.SQL("SELECT {}::text::text[] FROM pg_catalog.pg_stats"
                " WHERE schemaname = %s AND tablename = %s AND attname = %s").format(sql.Identifier(stat)),
        (table.schema, table.name, column),
    )
    row = cur.fetchone()
    values = row[0] if row else None
    if values:
        pick = values[len(values) // 2] if ranged else values[0]
        return Chosen(pick, f"{'median histogram bound' if ranged else 'most common value'} of {label}")
    cur.execute(sql.SQL("SELECT {c}::text FROM {t} WHERE {c} IS NOT NULL LIMIT 1").format(
        c=sql.Identifier(column), t=table.identifier))
    row = cur.fetchone()
    if row is None:
        return None
    return Chosen(row[0], f"a value of {label}")
