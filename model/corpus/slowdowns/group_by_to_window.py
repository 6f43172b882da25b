"""``SELECT k1, k2, AGG(x) AS a FROM … GROUP BY k1, k2`` → ``SELECT DISTINCT k1, k2, AGG(x) OVER
(PARTITION BY k1, k2) AS a FROM …``. The inverse of the rules backend's ``window_to_group_by``.

Why it is slower: GROUP BY aggregates in one pass (hash or sorted), producing one row per group;
the window version sorts every input row by the partition keys, computes the aggregate for each
row, then removes the duplicates with a second sort or hash over all rows.

Why it is equivalent: within a partition the window aggregate equals the group's aggregate, so
every row of the partition projects to the same (k1, k2, a); DISTINCT keeps one of them, i.e.
one row per group with its aggregate. Preconditions: a SELECT whose GROUP BY is plain
expressions (no ROLLUP, CUBE, GROUPING SETS, no positions) and whose items are exactly those
expressions (each once, as written) plus aggregates over the same rows (no DISTINCT, FILTER,
ORDER BY inside an aggregate, no nested aggregate, no window); no HAVING, DISTINCT, window
clause, LIMIT/OFFSET; an ORDER BY, if any, without aggregates; no volatile function.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT o.user_id, count(*) AS n, sum(o.amount) AS total FROM orders AS o WHERE o.id < 100 GROUP BY o.user_id"
>>> print(group_by_to_window(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT DISTINCT o.user_id, COUNT(*) OVER (PARTITION BY o.user_id) AS n, SUM(o.amount) OVER (PARTITION BY o.user_id) AS total FROM orders AS o WHERE o.id < 100
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from sidecar.catalog import Catalog


def group_by_to_window(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        if _applies(select):
            _rewrite(select)
            fired = True
    return tree if fired else None


def _applies(select: exp.Select) -> bool:
    group = select.args.get("group")
    if group is None or not group.expressions or any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets")):
        return False
    if any(select.args.get(k) for k in ("having", "distinct", "windows", "limit", "offset", "locks", "qualify")):
        return False
    if any(isinstance(k, exp.Literal) or k.find(exp.AggFunc, exp.Query) for k in group.expressions):
        return False
    order = select.args.get("order")
    if order is not None and order.find(exp.AggFunc):
        return False
    keys = [k.sql(dialect="postgres") for k in group.expressions]
    seen: list[str] = []
    aggregates = 0
    for item in select.expressions:
        value = item.this if isinstance(item, exp.Alias) else item
        text = value.sql(dialect="postgres")
        if text in keys:
            seen.append(text)
        elif isinstance(value, exp.AggFunc) and isinstance(item, exp.Alias) and _plain_aggregate(value):
            aggregates += 1
        else:
            return False
    return sorted(seen) == sorted(keys) and aggregates > 0 and deterministic(select)


def _plain_aggregate(aggregate: exp.AggFunc) -> bool:
    if aggregate.find(exp.Distinct, exp.Filter, exp.Order, exp.Window, exp.Query):
        return False
    return not any(inner is not aggregate for inner in aggregate.find_all(exp.AggFunc))


def _rewrite(select: exp.Select) -> None:
    keys = [k.copy() for k in select.args["group"].expressions]
    items = []
    for item in select.expressions:
        value = item.this if isinstance(item, exp.Alias) else item
        if isinstance(item, exp.Alias) and isinstance(value, exp.AggFunc):
            window = exp.Window(this=value.copy(), partition_by=[k.copy() for k in keys])
            items.append(exp.Alias(this=window, alias=item.args["alias"].copy()))
        else:
            items.append(item.copy())
    select.set("expressions", items)
    select.set("group", None)
    select.set("distinct", exp.Distinct())
