"""Schema facts the rewrite rules rely on: columns, types, nullability, keys, indexes, sizes.

Everything here is I/O-free except :func:`load_catalog`, which reads ``pg_catalog`` and the session's
join-planning settings through one connection. Rules receive a :class:`Catalog` and must treat a
missing table as "unknown", never as "no constraints". Row estimates a rule needs from the planner
reach it through the rules backend (``scan_rows``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

if TYPE_CHECKING:
    import psycopg

DATE_TYPES = frozenset({"date", "timestamp without time zone", "timestamp with time zone"})


@dataclass(frozen=True)
class Column:
    name: str
    """Lower-case column name."""
    data_type: str
    """``format_type()`` spelling, e.g. ``integer``, ``timestamp with time zone``, ``numeric(12,2)``."""
    nullable: bool
    """False when the column is declared NOT NULL."""


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = ()
    """Column sets of unique constraints and unique indexes (without expressions or predicates)."""
    indexes: tuple[tuple[str, ...], ...] = ()
    """Leading-to-trailing key columns of every plain-column index, primary key included."""
    row_estimate: int = 0

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        for column in self.columns:
            if column.name == lowered:
                return column
        return None

    @property
    def keys(self) -> tuple[tuple[str, ...], ...]:
        """Column sets that identify a row: the primary key, then unique keys over NOT NULL columns."""
        keys: list[tuple[str, ...]] = [self.primary_key] if self.primary_key else []
        for key in self.unique_keys:
            if key not in keys and all(
                (col := self.column(name)) is not None and not col.nullable for name in key
            ):
                keys.append(key)
        return tuple(keys)


@dataclass(frozen=True)
class Catalog:
    tables: dict[str, Table] = field(default_factory=dict)
    """Keyed by ``schema.name``; lookups also accept the bare name when it is unambiguous."""
    scan_rows: dict[str, float] = field(default_factory=dict)
    """The planner's row estimate of single-relation probe queries (see
    ``sidecar.rules.explicit_join_order.with_scan_estimates``), keyed by the probe's SQL text as
    sqlglot renders it in the postgres dialect."""
    join_collapse_limit: int = 8
    """The session's ``join_collapse_limit``: explicit JOINs beyond it keep (part of) their written order."""
    from_collapse_limit: int = 8
    """The session's ``from_collapse_limit``: pulled-up subqueries beyond it stay separate subproblems."""
    geqo_threshold: int = 12
    """The session's ``geqo_threshold``: from this many FROM items on, the genetic optimizer plans."""
    geqo: bool = True
    """Whether the session's genetic query optimizer is on."""

    def table(self, name: str) -> Table | None:
        """Find a table by ``name`` or ``schema.name`` (case-insensitive).

        >>> orders = Table("public", "orders", (Column("id", "integer", False),), ("id",))
        >>> Catalog({"public.orders": orders}).table("ORDERS").primary_key
        ('id',)
        >>> Catalog({"public.orders": orders}).table("sales.orders") is None
        True
        """
        lowered = name.lower()
        if lowered in self.tables:
            return self.tables[lowered]
        if "." in lowered:
            return None
        matches = [t for key, t in self.tables.items() if key.rsplit(".", 1)[-1] == lowered]
        return matches[0] if len(matches) == 1 else None


def referenced_tables(sql: str) -> list[str]:
    """Names of the tables a statement reads (CTE names excluded), sorted, as written (lower-case).

    >>> referenced_tables("WITH t AS (SELECT * FROM orders) SELECT * FROM t JOIN public.users u ON true")
    ['orders', 'public.users']
    >>> referenced_tables("not sql at all (")
    []
    """
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return []
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not table.name:
            continue
        qualified = ".".join(part.name.lower() for part in table.parts)
        if not table.db and table.name.lower() in cte_names:
            continue
        names.add(qualified)
    return sorted(names)


_TABLE_QUERY = """
SELECT c.oid, n.nspname, c.relname, greatest(c.reltuples, 0)::bigint
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass(%s)
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMN_QUERY = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_INDEX_QUERY = """
SELECT i.indisprimary, i.indisunique,
       array(SELECT a.attname
             FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             ORDER BY k.ord)::text[],
       i.indnkeyatts, i.indexprs IS NULL AND i.indpred IS NULL AND NOT (0 = ANY (i.indkey::int2[]))
FROM pg_catalog.pg_index AS i
WHERE i.indrelid = %s AND i.indisvalid
ORDER BY i.indexrelid
"""


def load_catalog(conn: psycopg.Connection[Any], names: Iterable[str | tuple[str | None, str]]) -> Catalog:
    """Read the named tables' catalog entries, resolving names through the session's search_path,
    and the session's join-planning settings.

    A name is text as a query writes it (``orders``, ``public.orders``) or a parsed (schema, name)
    pair (``sidecar.verify.Statement.tables``), which is quoted exactly. Names that do not resolve to
    a table, view or foreign table are skipped.
    """
    from psycopg import sql

    tables: dict[str, Table] = {}
    with conn.cursor() as cur:
        for name in names:
            if not isinstance(name, str):
                name = sql.Identifier(*[part for part in name if part is not None]).as_string(conn)
            row = cur.execute(_TABLE_QUERY, (name,)).fetchone()
            if row is None:
                continue
            oid, schema, relname, reltuples = row
            columns = tuple(
                Column(attname, data_type, bool(nullable))
                for attname, data_type, nullable in cur.execute(_COLUMN_QUERY, (oid,)).fetchall()
            )
            primary_key: tuple[str, ...] = ()
            unique_keys: list[tuple[str, ...]] = []
            indexes: list[tuple[str, ...]] = []
            for is_primary, is_unique, attnames, key_count, plain in cur.execute(
                _INDEX_QUERY, (oid,)
            ).fetchall():
                if not plain:
                    continue
                key = tuple(attnames[:key_count])
                indexes.append(key)
                if is_primary:
                    primary_key = key
                elif is_unique:
                    unique_keys.append(key)
            tables[f"{schema}.{relname}"] = Table(
                schema=schema,
                name=relname,
                columns=columns,
                primary_key=primary_key,
                unique_keys=tuple(unique_keys),
                indexes=tuple(indexes),
                row_estimate=int(reltuples),
            )
        settings = cur.execute(_PLANNER_SETTINGS).fetchone()
    assert settings is not None
    join_limit, from_limit, geqo_threshold, geqo = settings
    return Catalog(tables, join_collapse_limit=int(join_limit), from_collapse_limit=int(from_limit),
                   geqo_threshold=int(geqo_threshold), geqo=bool(geqo))


_PLANNER_SETTINGS = """
SELECT current_setting('join_collapse_limit')::integer, current_setting('from_collapse_limit')::integer,
       current_setting('geqo_threshold')::integer, current_setting('geqo')::boolean
"""
