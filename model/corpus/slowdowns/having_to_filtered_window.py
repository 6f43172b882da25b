"""``SELECT k, AGG(x) AS a FROM … GROUP BY k HAVING cond`` → ``SELECT DISTINCT s.k, s.a FROM (SELECT
k, AGG(x) OVER (PARTITION BY k) AS a FROM …) AS s WHERE cond'``. The inverse of the rules backend's
``filtered_window_to_having``.

Why it is slower: GROUP BY aggregates in one pass and HAVING filters the groups; the window form
sorts every input row by the keys, computes the aggregates for every row, filters every row (the
filter reads the window values, so PostgreSQL cannot push it below the WindowAgg) and removes the
duplicates with a second sort or hash.

Why it is equivalent: within a partition each window aggregate equals the group's aggregate, and
the keys are constant, so ``cond'`` (HAVING with its aggregates and keys read from the derived
table's columns) keeps all or none of a partition's rows, and DISTINCT keeps one row per kept
partition: the group's row. Every key is projected, so distinct groups give distinct rows.
Preconditions: a SELECT with plain GROUP BY keys that are columns (no ROLLUP, CUBE, GROUPING SETS,
positions or expressions) and a HAVING; its items are exactly the keys (each once) plus aliased
plain aggregates (no DISTINCT, FILTER, ORDER BY inside, no nested aggregate or window); HAVING
reads columns only inside plain aggregates or as keys; no DISTINCT, window clause, LIMIT/OFFSET,
locking, WITH, subquery in HAVING; an ORDER BY, if any, names outputs (bare output names or
positions); output names are distinct; no volatile function.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT o.user_id, count(*) AS n FROM orders AS o GROUP BY o.user_id HAVING count(*) > 80"
>>> print(having_to_filtered_window(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT DISTINCT laser_groups_1.user_id, laser_groups_1.n FROM (SELECT o.user_id, COUNT(*) OVER (PARTITION BY o.user_id) AS n
FROM orders AS o) AS laser_groups_1 WHERE laser_groups_1.n > 80
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from sidecar.catalog import Catalog
from sidecar.rules._scope import fresh_name

_FORBIDDEN = ("distinct", "windows", "limit", "offset", "locks", "qualify", "with_", "into", "laterals")


def having_to_filtered_window(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    taken = {identifier.name.lower() for identifier in tree.find_all(exp.Identifier)}
    fired = False
    for select in list(tree.find_all(exp.Select)):
        replacement = _rewritten(select, taken)
        if replacement is not None:
            if select is tree:
                tree = replacement
            else:
                select.replace(replacement)
            fired = True
    return tree if fired else None


def _rewritten(select: exp.Select, taken: set[str]) -> exp.Select | None:
    group = select.args.get("group")
    having = select.args.get("having")
    if group is None or having is None or not group.expressions:
        return None
    if any(group.args.get(k) for k in ("rollup", "cube", "grouping_sets")) or any(select.args.get(k) for k in _FORBIDDEN):
        return None
    if not all(isinstance(key, exp.Column) and key.table for key in group.expressions):
        return None
    if having.find(exp.Query, exp.Window) or not deterministic(select):
        return None
    keys = {key.sql(dialect="postgres"): key for key in group.expressions}
    if len(keys) != len(group.expressions):
        return None

    names: dict[str, str] = {}  # expression text → output name of the derived table
    inner_items: list[exp.Expr] = []
    projected_keys: set[str] = set()
    for item in select.expressions:
        value = item.this if isinstance(item, exp.Alias) else item
        text = value.sql(dialect="postgres")
        name = item.alias_or_name
        if not name or name.lower() in {n.lower() for n in names.values()}:
            return None
        if text in keys and text not in projected_keys:
            projected_keys.add(text)
            inner_items.append(item.copy())
        elif isinstance(item, exp.Alias) and isinstance(value, exp.AggFunc) and _plain_aggregate(value):
            inner_items.append(exp.Alias(this=_window(value, keys), alias=item.args["alias"].copy()))
        else:
            return None
        names[text] = name
    if projected_keys != set(keys):
        return None
    visible = list(names.values())

    condition = having.this.copy()
    for aggregate in list(condition.find_all(exp.AggFunc)):
        if not _plain_aggregate(aggregate):
            return None
        text = aggregate.sql(dialect="postgres")
        if text not in names:
            names[text] = fresh_name("laser_having", taken)
            inner_items.append(exp.alias_(_window(aggregate, keys), names[text]))
    alias = fresh_name("laser_groups", taken)
    for node in list(condition.find_all(exp.AggFunc, exp.Column)):
        if node.find_ancestor(exp.AggFunc) is not None:
            continue  # inside an aggregate, replaced with it
        text = node.sql(dialect="postgres")
        if text not in names:
            return None  # a column outside any aggregate that is not a key
        replacement = exp.column(names[text], table=alias)
        if node is condition:
            condition = replacement
        else:
            node.replace(replacement)

    order = select.args.get("order")
    if order is not None:
        for ordered in order.expressions:
            key = ordered.this
            if isinstance(key, exp.Literal) and not key.is_string and key.name.isdigit():
                continue
            if not (isinstance(key, exp.Column) and not key.table and key.name.lower() in
                    {n.lower() for n in visible}):
                return None

    inner = select.copy()
    inner.set("expressions", inner_items)
    inner.set("group", None)
    inner.set("having", None)
    inner.set("order", None)
    outer = exp.select(*(exp.column(name, table=alias) for name in visible)).distinct()
    outer.set("from_", exp.From(this=exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias)))))
    outer.set("where", exp.Where(this=condition))
    if order is not None:
        outer.set("order", order.copy())
    return outer


def _window(aggregate: exp.AggFunc, keys: dict[str, exp.Expr]) -> exp.Window:
    return exp.Window(this=aggregate.copy(), partition_by=[key.copy() for key in keys.values()], over="OVER")


def _plain_aggregate(aggregate: exp.AggFunc) -> bool:
    if aggregate.find(exp.Distinct, exp.Filter, exp.Order, exp.Window, exp.Query):
        return False
    return not any(inner is not aggregate for inner in aggregate.find_all(exp.AggFunc))
