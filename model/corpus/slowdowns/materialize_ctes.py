"""A CTE referenced once → the same CTE forced ``AS MATERIALIZED``.

Why it is slower: since PostgreSQL 12 a non-recursive CTE referenced once is inlined, so the
outer query's filters and join conditions reach its tables (index scans, pushed-down
predicates). ``MATERIALIZED`` makes it an optimization fence: the whole CTE is computed and stored
first, then scanned. Undone by dropping the keyword (no rules-backend rule does; the
``push_predicates_into_ctes`` rule works around fences instead).

Why it is equivalent: a CTE's result is the same whether it is inlined or materialized, as long
as its body is evaluated once either way and gives the same rows each time: the body must be a
SELECT without volatile functions (a CTE referenced once is evaluated once in both forms).
Recursive WITH clauses are left alone. Every qualifying CTE is marked in one step.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "WITH big AS (SELECT user_id, amount FROM orders) SELECT * FROM big WHERE user_id = 7"
>>> print(materialize_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
WITH big AS MATERIALIZED (SELECT user_id, amount FROM orders) SELECT * FROM big WHERE user_id = 7
>>> twice = "WITH big AS (SELECT user_id FROM orders) SELECT * FROM big AS a JOIN big AS b USING (user_id)"
>>> materialize_ctes(sqlglot.parse_one(twice, read="postgres"), Catalog()) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from sidecar.catalog import Catalog


def references(query: exp.Expr, name: str) -> list[exp.Table]:
    """Unqualified FROM items named ``name`` anywhere in ``query``."""
    return [t for t in query.find_all(exp.Table)
            if t.name.lower() == name and not t.args.get("db") and not t.args.get("catalog")]


def materialize_ctes(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for with_ in tree.find_all(exp.With):
        if with_.args.get("recursive"):
            continue
        scope = with_.parent
        if scope is None:
            continue
        for cte in with_.expressions:
            if cte.args.get("materialized") is not None or not isinstance(cte.this, exp.Query):
                continue
            if not deterministic(cte.this) or len(references(scope, cte.alias_or_name.lower())) != 1:
                continue
            cte.set("materialized", True)
            fired = True
    return tree if fired else None
