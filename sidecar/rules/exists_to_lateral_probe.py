"""Turn ``WHERE ... AND EXISTS (SELECT ... FROM t WHERE t.k = <outer> ...)`` into an index probe:
``FROM ..., LATERAL (SELECT 1 FROM t WHERE t.k = <outer> ... LIMIT 1) AS exists_probe``.

PostgreSQL plans EXISTS as a semi-join and picks its shape from estimates. When the subquery also
filters on a predicate it cannot estimate (a comparison between two columns such as
``l_commitdate < l_receiptdate`` is given a default third), it can prefer a hash semi-join that
reads the whole inner table over probing ``t``'s index once per outer row and stopping at the first
match. A LATERAL subquery with LIMIT is never pulled up into a join, so PostgreSQL has to run it
per outer row, through the index on ``k``. Measured on TPC-H Q4 (primary keys only): SF 0.1, 5.5k
orders in the quarter, 130 ms → 40 ms; at SF 1 the planner probes by itself and the rewrite is
slower. The verifier decides per query; this rule only proposes.

The two forms return the same rows: a LIMIT 1 subquery yields zero or one row per outer row, so
the cross join keeps each outer row once when the subquery finds a row and drops it otherwise,
exactly as the EXISTS conjunct does. Its one column is never projected.

Constraints relied on (each checked; a failing EXISTS is left alone, and the rule returns None when
none was rewritten):

- The EXISTS is a top-level conjunct of a SELECT's WHERE (not under OR or NOT; NOT EXISTS is an
  anti-join PostgreSQL already probes well), at any depth of the statement. That SELECT has a FROM,
  no locking clause, and no bare ``*`` in its select list (the probe's column would become an
  output column).
- The subquery is one plain SELECT over exactly one base table that is in the catalog (not a CTE of
  the same name): no joins, set operations, WITH, GROUP BY, HAVING, aggregates or window functions
  of its own, no LIMIT/OFFSET/FETCH, DISTINCT or locking clause. Its select list is replaced by 1.
- One conjunct of its WHERE is ``t.k = <expression>`` (either side) where ``k`` is the leading
  column of an index of ``t`` (primary key included) and the expression references outer columns
  only: at least one, none of them a column of ``t``, and no subquery.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> users = Table("public", "users", (Column("id", "integer", False),), ("id",), indexes=(("id",),))
>>> orders = Table("public", "orders", (Column("id", "integer", False), Column("user_id", "integer", False)),
...                ("id",), indexes=(("id",), ("user_id",)))
>>> catalog = Catalog({"public.users": users, "public.orders": orders})
>>> sql = ("SELECT count(*) FROM users AS u WHERE u.id < 10 "
...        "AND EXISTS (SELECT * FROM orders AS o WHERE o.user_id = u.id)")
>>> print(exists_to_lateral_probe(sqlglot.parse_one(sql, read="postgres"), catalog).sql(dialect="postgres"))
SELECT COUNT(*) FROM users AS u, LATERAL (SELECT 1 FROM orders AS o WHERE o.user_id = u.id LIMIT 1) AS exists_probe
WHERE u.id < 10
"""

from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog, Table
from sidecar.rules._scope import (
    and_all,
    catalog_table,
    conjuncts,
    fresh_name,
    rewrite_each_select_with_names,
)

_SUBQUERY_ALLOWED = frozenset({"expressions", "from_", "where"})
_ALIAS = "exists_probe"


def exists_to_lateral_probe(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    return rewrite_each_select_with_names(expression, catalog, _rewrite)


def _rewrite(select: exp.Select, catalog: Catalog, cte_names: set[str], used: set[str]) -> bool:
    where = select.args.get("where")
    if where is None or select.args.get("from_") is None or select.args.get("locks"):
        return False
    if any(isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
                                          and not item.table) for item in select.expressions):
        return False
    kept: list[exp.Expr] = []
    probes: list[exp.Select] = []
    for part in conjuncts(where.this):
        sub = part.this if isinstance(part, exp.Exists) else None
        if isinstance(sub, exp.Select) and _probe_ready(sub, catalog, cte_names):
            probes.append(sub)
        else:
            kept.append(part)
    if not probes:
        return False
    for sub in probes:
        sub.set("expressions", [exp.Literal.number(1)])
        sub.set("limit", exp.Limit(expression=exp.Literal.number(1)))
        alias = fresh_name(_ALIAS, used, bare=True)
        lateral = exp.Lateral(this=exp.Subquery(this=sub), alias=exp.TableAlias(this=exp.to_identifier(alias)))
        select.append("joins", exp.Join(this=lateral))
    remaining = and_all(kept)
    select.set("where", exp.Where(this=remaining) if remaining is not None else None)
    return True


def _probe_ready(sub: exp.Select, catalog: Catalog, cte_names: set[str]) -> bool:
    if any(value for key, value in sub.args.items() if key not in _SUBQUERY_ALLOWED):
        return False
    source = sub.args.get("from_")
    where = sub.args.get("where")
    if source is None or where is None or not isinstance(source.this, exp.Table):
        return False
    node = source.this
    if not node.name or (not node.args.get("db") and node.name.lower() in cte_names):
        return False
    table = catalog_table(node, catalog)
    if table is None:
        return False
    if any(n.parent_select is sub for n in sub.find_all(exp.AggFunc, exp.Window)):
        return False
    alias = node.alias_or_name.lower()
    leading = {index[0].lower() for index in table.indexes if index}
    for part in conjuncts(where.this):
        if not isinstance(part, exp.EQ):
            continue
        for inner, other in ((part.this, part.expression), (part.expression, part.this)):
            if (isinstance(inner, exp.Column) and _is_inner(inner, alias, table)
                    and inner.name.lower() in leading and _outer_only(other, alias, table)):
                return True
    return False


def _is_inner(column: exp.Column, alias: str, table: Table) -> bool:
    if column.args.get("db"):
        return False
    if column.table:
        return column.table.lower() == alias
    return table.column(column.name) is not None


def _outer_only(expression: exp.Expr, alias: str, table: Table) -> bool:
    if expression.find(exp.Subquery, exp.Select, exp.Star):
        return False
    columns = list(expression.find_all(exp.Column))
    return bool(columns) and not any(
        column.args.get("db") or _is_inner(column, alias, table) for column in columns
    )
