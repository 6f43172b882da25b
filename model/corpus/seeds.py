"""Complexity-aware seeds from the target schema (LASER §4.1, without an LLM).

LASER steers an LLM generator towards dense predicates, multi-table joins and nested subqueries;
here the same constraints drive a generator over the catalog, so it works offline on any schema:

- joins follow declared foreign keys, and equi-join keys inferred where none are declared (a
  column of the same type named like another table's single-column key: ``user_id`` → ``users.id``,
  ``ss_item_sk`` → ``item.i_item_sk``);
- predicate constants come from ``pg_stats`` (most common values, histogram bounds), so that each
  predicate selects rows;
- each seed has at least ``min_joins`` joins, ``min_predicates`` predicates and ``min_subqueries``
  subqueries (correlated scalar aggregates, IN and EXISTS over other tables), an aggregate with
  GROUP BY, and sometimes HAVING, a CTE read twice, a window function or a UNION ALL.

``generate`` is pure (schema facts in, SQL out, reproducible from the random generator); whether a
seed runs, returns rows and is deterministic is decided by executing it (``grower.admit``).
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlglot import exp

from sidecar.catalog import Catalog, Table

_NUMERIC = re.compile(r"^(smallint|integer|bigint|numeric|real|double precision|decimal)")
_TEXTUAL = re.compile(r"^(text|character varying|character|char|varchar)")


@dataclass(frozen=True)
class SeedShape:
    """The minimum structure of a generated seed (LASER: "high-density predicate logic and
    relational interdependence")."""

    min_joins: int = 2
    min_predicates: int = 3
    min_subqueries: int = 1

    def __post_init__(self) -> None:
        if self.min_joins < 0 or self.min_predicates < 0 or self.min_subqueries < 0:
            raise ValueError("the minimum joins, predicates and subqueries cannot be negative")


@dataclass(frozen=True)
class Edge:
    """``child.column`` refers to ``parent.key`` (declared, or inferred from names and types)."""

    child: str
    column: str
    parent: str
    key: str
    declared: bool


@dataclass(frozen=True)
class ColumnStats:
    common: tuple[str, ...] = ()
    """pg_stats.most_common_vals, as text."""
    bounds: tuple[str, ...] = ()
    """pg_stats.histogram_bounds, as text."""


@dataclass
class Schema:
    catalog: Catalog
    edges: list[Edge] = field(default_factory=list)
    stats: dict[tuple[str, str], ColumnStats] = field(default_factory=dict)
    """(table key, column) → its statistics; the table key as in ``catalog.tables``."""


# -- reading the schema -------------------------------------------------------------------------

_FOREIGN_KEYS = """
SELECT cn.nspname || '.' || c.relname, a.attname, pn.nspname || '.' || p.relname, pa.attname
FROM pg_constraint AS k
JOIN pg_class AS c ON c.oid = k.conrelid JOIN pg_namespace AS cn ON cn.oid = c.relnamespace
JOIN pg_class AS p ON p.oid = k.confrelid JOIN pg_namespace AS pn ON pn.oid = p.relnamespace
JOIN pg_attribute AS a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
JOIN pg_attribute AS pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[1]
WHERE k.contype = 'f' AND cardinality(k.conkey) = 1
"""

_STATS = """
SELECT schemaname || '.' || tablename, attname,
       coalesce(most_common_vals::text::text[], '{}'), coalesce(histogram_bounds::text::text[], '{}')
FROM pg_stats WHERE schemaname || '.' || tablename = ANY(%s)
"""


def read_schema(conn: psycopg.Connection[Any], catalog: Catalog) -> Schema:
    """Foreign keys (declared, then inferred) and column statistics of the catalog's tables."""
    keys = list(catalog.tables)
    declared = [Edge(child, column, parent, key, True) for child, column, parent, key
                in conn.execute(_FOREIGN_KEYS).fetchall() if child in catalog.tables and parent in catalog.tables]
    stats = {(table, column): ColumnStats(tuple(common), tuple(bounds))
             for table, column, common, bounds in conn.execute(_STATS, (keys,)).fetchall()}
    return Schema(catalog, declared + infer_edges(catalog, declared), stats)


def infer_edges(catalog: Catalog, declared: Sequence[Edge] = ()) -> list[Edge]:
    """Equi-join keys nobody declared: a column of the same type as another table's single-column
    primary key, named ``<singular table>_<key>`` (``user_id`` → ``users.id``), or ending in the
    key's name after its prefix when that is two words or more (``ss_sold_date_sk`` →
    ``date_dim.d_date_sk``).

    >>> from sidecar.catalog import Column
    >>> users = Table("public", "users", (Column("id", "integer", False),), ("id",))
    >>> orders = Table("public", "orders", (Column("id", "integer", False), Column("user_id", "integer", False)),
    ...                ("id",))
    >>> item = Table("public", "item", (Column("i_item_sk", "integer", False),), ("i_item_sk",))
    >>> sales = Table("public", "store_sales", (Column("ss_item_sk", "integer", True),))
    >>> catalog = Catalog({"public.users": users, "public.orders": orders, "public.item": item,
    ...                    "public.store_sales": sales})
    >>> [(e.child, e.column, e.parent) for e in infer_edges(catalog)]
    [('public.store_sales', 'ss_item_sk', 'public.item'), ('public.orders', 'user_id', 'public.users')]
    """
    known = {(e.child, e.column) for e in declared}
    found = []
    for parent_key, parent in sorted(catalog.tables.items()):
        if len(parent.primary_key) != 1:
            continue
        key = parent.primary_key[0]
        key_column = parent.column(key)
        assert key_column is not None
        named = f"{_singular(parent.name)}_{key}"
        stem = key.split("_", 1)[1] if "_" in key else ""
        for child_key, child in sorted(catalog.tables.items()):
            for column in child.columns:
                if child_key == parent_key or (child_key, column.name) in known or column.name in child.primary_key:
                    continue  # (a table's own key refers to nothing)
                # a two-word stem ("date_sk") may end a longer name ("ss_sold_date_sk"); "id" may not
                matches = column.name == named or (
                    "_" in stem and (column.name.split("_", 1)[-1] == stem or column.name.endswith("_" + stem)))
                if column.data_type == key_column.data_type and matches:
                    found.append(Edge(child_key, column.name, parent_key, key, False))
    return found


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


# -- generating ---------------------------------------------------------------------------------

@dataclass
class _Query:
    """The parts of one seed as it is built, rendered at the end."""

    tables: list[tuple[str, str]] = field(default_factory=list)
    """(alias, table key), in FROM order."""
    joins: list[str] = field(default_factory=list)
    predicates: list[str] = field(default_factory=list)
    subqueries: int = 0


def generate(schema: Schema, count: int, rng: random.Random, shape: SeedShape = SeedShape()) -> list[str]:
    """``count`` seed statements (fewer when the schema has no table with a foreign key).

    >>> from sidecar.catalog import Column
    >>> users = Table("public", "users", (Column("id", "integer", False), Column("country", "text", False)), ("id",),
    ...               row_estimate=1000)
    >>> orders = Table("public", "orders", (Column("id", "integer", False), Column("user_id", "integer", False),
    ...                Column("amount", "numeric(12,2)", False)), ("id",), row_estimate=50000)
    >>> schema = Schema(Catalog({"public.users": users, "public.orders": orders}), [],
    ...                 {("public.users", "country"): ColumnStats(("DE", "FR", "JP")),
    ...                  ("public.orders", "amount"): ColumnStats((), ("1.00", "250.00", "900.00", "1999.00"))})
    >>> schema.edges = infer_edges(schema.catalog)
    >>> [sql] = generate(schema, 1, random.Random(3), SeedShape(min_joins=1, min_predicates=2, min_subqueries=1))
    >>> import sqlglot; sqlglot.parse_one(sql, read="postgres").find(sqlglot.exp.Join) is not None
    True
    """
    degree = {key: sum(e.child == key for e in schema.edges) for key in schema.catalog.tables}
    facts = [key for key, n in degree.items() if n >= max(shape.min_joins, 1)] or [k for k, n in degree.items() if n]
    if not facts:
        return []
    # Fact tables first: the most foreign keys, then the most rows.
    weights = [degree[key] ** 2 * max(schema.catalog.tables[key].row_estimate, 1) ** 0.5 for key in facts]
    seeds = []
    for _ in range(count):
        fact = rng.choices(facts, weights)[0]
        seeds.append(_one(schema, fact, rng, shape))
    return seeds


def _one(schema: Schema, fact: str, rng: random.Random, shape: SeedShape) -> str:
    query = _Query(tables=[("f", fact)])
    outgoing = [e for e in schema.edges if e.child == fact]
    rng.shuffle(outgoing)
    wanted = min(len(outgoing), shape.min_joins + rng.randint(0, 2))
    for index, edge in enumerate(outgoing[:wanted], 1):
        alias = f"d{index}"
        query.tables.append((alias, edge.parent))
        query.joins.append(f"{alias}.{_ident(edge.key)} = f.{_ident(edge.column)}")
    unjoined = outgoing[wanted:]
    keys = {(e.child, e.column) for e in schema.edges} | {(e.parent, e.key) for e in schema.edges}
    candidates = [(alias, table, column) for alias, table in query.tables
                  for column in schema.catalog.tables[table].columns if (table, column.name) in schema.stats]
    rng.shuffle(candidates)
    # Attributes before keys: a filter on a surrogate key rarely means anything (and often empties the join).
    candidates.sort(key=lambda c: (c[1], c[2].name) in keys or c[2].name in schema.catalog.tables[c[1]].primary_key)
    target = shape.min_predicates + rng.randint(0, 1)  # more conjuncts over several joins mostly select nothing
    for alias, table, column in candidates:
        if len(query.predicates) >= target:
            break
        predicate = _predicate(alias, column.name, column.data_type, schema.stats[(table, column.name)], rng)
        if predicate is not None:
            query.predicates.append(predicate)
    kinds = ["scalar", "in", "exists"]
    wanted_subqueries = max(shape.min_subqueries, rng.randint(0, 2))
    for _ in range(4 * wanted_subqueries):  # a kind the schema cannot serve is passed over
        if query.subqueries >= wanted_subqueries:
            break
        subquery = _subquery(rng.choice(kinds), schema, query, fact, unjoined, rng)
        if subquery is not None and subquery not in query.predicates:
            query.predicates.append(subquery)
            query.subqueries += 1
    return _render(schema, query, fact, rng)


def _predicate(alias: str, column: str, data_type: str, stats: ColumnStats, rng: random.Random) -> str | None:
    name = f"{alias}.{_ident(column)}"
    numeric = bool(_NUMERIC.match(data_type))
    if not (numeric or _TEXTUAL.match(data_type) or data_type.startswith(("date", "timestamp"))):
        return None
    if stats.common and (not stats.bounds or rng.random() < 0.5):
        values = rng.sample(stats.common, min(len(stats.common), rng.choice([1, 2, 3])))
        literals = [_literal(v, numeric, data_type) for v in values]
        return f"{name} = {literals[0]}" if len(literals) == 1 else f"{name} IN ({', '.join(literals)})"
    if len(stats.bounds) >= 3:
        low = rng.randrange(0, len(stats.bounds) - 2)
        high = min(len(stats.bounds) - 1, low + rng.randint(2, max(2, len(stats.bounds) // 2)))
        return (f"{name} BETWEEN {_literal(stats.bounds[low], numeric, data_type)} "
                f"AND {_literal(stats.bounds[high], numeric, data_type)}")
    return None


def _literal(value: str, numeric: bool, data_type: str) -> str:
    if numeric:
        return exp.Literal.number(value).sql(dialect="postgres")
    text = exp.Literal.string(value).sql(dialect="postgres")
    if data_type.startswith(("date", "timestamp")):
        return f"CAST({text} AS {data_type})"
    return text


def _measure(table: Table) -> str | None:
    keys = set(table.primary_key)
    numeric = [c.name for c in table.columns if _NUMERIC.match(c.data_type) and c.name not in keys
               and not c.name.endswith(("_id", "_sk"))]
    return numeric[0] if numeric else None


def _subquery(kind: str, schema: Schema, query: _Query, fact: str, unjoined: list[Edge],
              rng: random.Random) -> str | None:
    table = schema.catalog.tables[fact]
    measure = _measure(table)
    outgoing = [e for e in schema.edges if e.child == fact]
    if kind == "scalar" and measure is not None and outgoing:
        edge = rng.choice(outgoing)
        return (f"f.{_ident(measure)} > (SELECT avg(x.{_ident(measure)}) FROM {_table(table)} AS x "
                f"WHERE x.{_ident(edge.column)} = f.{_ident(edge.column)})")
    if kind == "in" and unjoined:
        edge = rng.choice(unjoined)
        parent = schema.catalog.tables[edge.parent]
        inner = _inner_filter("p", edge.parent, schema, rng)
        return (f"f.{_ident(edge.column)} IN (SELECT p.{_ident(edge.key)} FROM {_table(parent)} AS p"
                f"{' WHERE ' + inner if inner else ''})")
    if kind == "exists" and len(query.tables) > 1:
        alias, dim = rng.choice(query.tables[1:])
        referencing = [e for e in schema.edges if e.parent == dim and e.child != fact]
        if not referencing:
            return None
        edge = rng.choice(referencing)
        other = schema.catalog.tables[edge.child]
        inner = _inner_filter("y", edge.child, schema, rng)
        key = next(e.key for e in schema.edges if e.parent == dim)
        return (f"EXISTS (SELECT 1 FROM {_table(other)} AS y WHERE y.{_ident(edge.column)} = {alias}.{_ident(key)}"
                f"{' AND ' + inner if inner else ''})")
    return None


def _inner_filter(alias: str, table: str, schema: Schema, rng: random.Random) -> str | None:
    columns = [c for c in schema.catalog.tables[table].columns if (table, c.name) in schema.stats]
    rng.shuffle(columns)
    for column in columns:
        predicate = _predicate(alias, column.name, column.data_type, schema.stats[(table, column.name)], rng)
        if predicate is not None:
            return predicate
    return None


def _render(schema: Schema, query: _Query, fact: str, rng: random.Random) -> str:
    catalog = schema.catalog
    group_candidates = [(alias, c.name) for alias, table in query.tables[1:] for c in catalog.tables[table].columns
                        if (table, c.name) in schema.stats and schema.stats[(table, c.name)].common
                        and _TEXTUAL.match(c.data_type)]
    measure = _measure(catalog.tables[fact])
    from_ = ", ".join(f"{_table(catalog.tables[table])} AS {alias}" for alias, table in query.tables)
    where = " AND ".join(query.joins + query.predicates) or "TRUE"
    aggregates = ["count(*) AS n"] + ([f"sum(f.{_ident(measure)}) AS total", f"avg(f.{_ident(measure)}) AS mean"]
                                      if measure else [])
    if not group_candidates:
        return f"SELECT {', '.join(aggregates)} FROM {from_} WHERE {where}"
    keys = rng.sample(group_candidates, min(len(group_candidates), rng.choice([1, 2])))
    key_list = ", ".join(f"{alias}.{_ident(column)}" for alias, column in keys)
    having = " HAVING count(*) > 1" if rng.random() < 0.3 else ""
    grouped = f"SELECT {key_list}, {', '.join(aggregates)} FROM {from_} WHERE {where} GROUP BY {key_list}{having}"
    shape = rng.random()
    names = ", ".join(_ident(column) for _, column in keys)
    if shape < 0.25:  # a CTE read twice: groups above the average group
        return (f"WITH grouped AS ({grouped}) SELECT {names}, n FROM grouped "
                f"WHERE n > (SELECT avg(n) FROM grouped) ORDER BY {names}")
    if shape < 0.4:  # a window over the groups
        return (f"SELECT {names}, n, rank() OVER (ORDER BY n DESC) AS position FROM ({grouped}) AS g "
                f"ORDER BY {names}")
    return f"{grouped} ORDER BY {key_list}"


def _ident(name: str) -> str:
    return exp.to_identifier(name).sql(dialect="postgres")


def _table(table: Table) -> str:
    return f"{_ident(table.schema)}.{_ident(table.name)}" if table.schema else _ident(table.name)
