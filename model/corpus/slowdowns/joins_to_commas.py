"""Explicit inner ``JOIN … ON`` → a comma-separated FROM list with every ON condition moved to
the end of the WHERE clause. The inverse of the rules backend's ``explicit_join_order``.

Why it can be slower: up to ``join_collapse_limit`` (8) relations PostgreSQL plans both forms
alike, so on small joins this only changes the text (the search learns that from the timing);
beyond it, or with ``from_collapse_limit`` reached by pulled-up subqueries, an explicit order the
author chose well is lost and the planner searches (or, past ``geqo_threshold``, samples) on its
own. It also makes the join conditions harder to tell from the filters, which a model must learn
to read.

Why it is equivalent: an inner join is the filtered cross product, ``A JOIN B ON p`` ≡
``A, B WHERE p``, and conjunction is commutative. Only SELECTs whose joins are all inner (JOIN,
INNER JOIN, CROSS JOIN or commas; no USING, NATURAL or LATERAL; no outer join anywhere in the
FROM, since ``,`` binds looser than ``JOIN``) and with at least one ``ON`` are rewritten.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT u.id FROM users AS u JOIN orders AS o ON o.user_id = u.id JOIN products AS p ON p.id = o.product_id WHERE p.price > 10"
>>> print(joins_to_commas(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT u.id FROM users AS u, orders AS o, products AS p WHERE p.price > 10 AND o.user_id = u.id AND p.id = o.product_id
"""
from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts


def joins_to_commas(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        joins = select.args.get("joins") or []
        if not joins or not any(join.args.get("on") for join in joins) or not all(map(_inner, joins)):
            continue
        moved = [part.copy() for join in joins for part in conjuncts(join.args.get("on"))]
        select.set("joins", [exp.Join(this=join.this.copy()) for join in joins])
        where = select.args.get("where")
        kept = [part.copy() for part in conjuncts(where.this if where is not None else None)]
        select.set("where", exp.Where(this=and_all(kept + moved)))
        fired = True
    return tree if fired else None


def _inner(join: exp.Join) -> bool:
    if join.side or join.args.get("using") or join.args.get("lateral") or join.args.get("method"):
        return False
    if not isinstance(join.this, (exp.Table, exp.Subquery)):
        return False
    return (join.kind or "").upper() in ("", "INNER", "CROSS")
