"""A grouped derived table's ``key IN (SELECT c FROM t WHERE <filters>)`` pre-filters → dropped, so it
aggregates every key and the join discards most groups afterwards.

Why it is slower: PostgreSQL does not push a join's restriction into a grouped subquery (short of a
parameterized nested loop it rarely picks), so without the pre-filter the derived table aggregates
its whole input: TPC-H Q17's decorrelated form averages every part's quantities where the query keeps
one brand and container (0.10 s → 0.37 s at SF 0.1). Undone by the rules-backend rule
``semijoin_reduce_derived_tables``.

Why it is equivalent: it fires only where that rule, applied to the result, writes back exactly the
input, so the dropped conditions are the ones the rule proves redundant (a grouped derived table
joined on its grouping key through column equalities to a table the outer query filters; see
``sidecar/rules/semijoin_reduce_derived_tables.py``). Every such condition in the statement is
dropped in one step.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("user_id", "integer", False), Column("amount", "numeric", False)))
>>> users = Table("public", "users", (Column("id", "integer", False), Column("country", "text", False)))
>>> catalog = Catalog({"public.orders": orders, "public.users": users})
>>> sql = ("SELECT u.id, t.total FROM users AS u JOIN (SELECT o.user_id, SUM(o.amount) AS total FROM orders AS o "
...        "WHERE o.user_id IN (SELECT u.id FROM users AS u WHERE u.country = 'IS') GROUP BY o.user_id) AS t "
...        "ON t.user_id = u.id WHERE u.country = 'IS'")
>>> print(drop_semijoin_reductions(sqlglot.parse_one(sql, read="postgres"), catalog).sql(dialect="postgres"))
... # doctest: +NORMALIZE_WHITESPACE
SELECT u.id, t.total FROM users AS u JOIN (SELECT o.user_id, SUM(o.amount) AS total FROM orders AS o
GROUP BY o.user_id) AS t ON t.user_id = u.id WHERE u.country = 'IS'
>>> drop_semijoin_reductions(sqlglot.parse_one(sql.replace("'IS')", "'NO')"), read="postgres"), catalog) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts
from sidecar.rules.semijoin_reduce_derived_tables import semijoin_reduce_derived_tables


def drop_semijoin_reductions(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    dropped = False
    for subquery in list(tree.find_all(exp.Subquery)):
        inner = subquery.this
        if not isinstance(subquery.parent, (exp.From, exp.Join)) or not isinstance(inner, exp.Select):
            continue
        where = inner.args.get("where")
        if where is None or not inner.args.get("group"):
            continue
        parts = conjuncts(where.this)
        kept = [part for part in parts if not (isinstance(part, exp.In) and part.args.get("query") is not None)]
        if len(kept) == len(parts):
            continue
        dropped = True
        remaining = and_all([part.copy() for part in kept])
        if remaining is None:
            inner.set("where", None)
        else:
            inner.where(remaining, append=False, copy=False)
    if not dropped:
        return None
    restored = semijoin_reduce_derived_tables(tree, catalog)
    if restored is None or restored.sql(dialect="postgres") != expression.sql(dialect="postgres"):
        return None
    return tree
