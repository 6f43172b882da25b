"""Replace a filter on window aggregates computed in a derived table by GROUP BY ... HAVING.

``SELECT DISTINCT s.k, s.c FROM (SELECT t.k, count(*) OVER (PARTITION BY t.k) AS c FROM t) AS s
WHERE s.c > 5`` becomes ``SELECT t.k AS k, count(*) AS c FROM t GROUP BY t.k HAVING count(*) > 5``.

Why it is faster on PostgreSQL: the planner neither pushes the outer filter below a WindowAgg
(the filter reads the window's value) nor recognises that DISTINCT over whole-partition window
values is a grouping. So it sorts every row of ``t`` by ``k``, computes the window for every row,
filters every row and then removes the duplicates with a second sort or hash over all survivors.
GROUP BY aggregates in one hash pass that keeps one row per key, and HAVING filters the groups.

Why it is equivalent, and the preconditions that make it so (the rule returns None otherwise):

- The outer query is ``SELECT DISTINCT`` (not DISTINCT ON; without DISTINCT every row of a
  partition would be a result row, and grouping would change the multiplicity) over exactly one
  derived table (no other FROM item, no column alias list), with at most WHERE and ORDER BY: no
  GROUP BY, HAVING, window, LIMIT/OFFSET, locking, WITH. Outer columns name the derived table's
  outputs (qualified with its alias or bare); no ``*``; WHERE has no subquery, aggregate, window
  or volatile function.
- The derived table is a plain SELECT (no DISTINCT, GROUP BY, HAVING, ORDER BY, LIMIT, WITH,
  window clause) over base tables joined by INNER joins or commas, with uniquely named outputs,
  no plain aggregate, no subquery, no volatile or unknown (possibly set-returning) function in
  its SELECT list.
- Every window is ``count/sum/avg/min/max(...) OVER (PARTITION BY P)`` with one common,
  non-empty partition ``P`` of plain columns, no ORDER BY and no frame: its value is the
  aggregate over the whole partition, which is the group's aggregate under ``GROUP BY P``
  (GROUP BY, like PARTITION BY, puts NULL keys in one group). ``OVER ()`` is refused: over no
  rows GROUP BY () would still return one row. Running aggregates (ORDER BY), frames, ranking
  and offset functions are refused: their value differs from row to row within a partition.
- Every non-window output the outer query reads (in its SELECT list, WHERE or ORDER BY) is a
  window-free expression of columns functionally determined by ``P`` (a ``P`` column, one equal
  to it through an equality conjunct, or a column of a table whose key is so determined). Then
  every value the outer query reads is constant within a partition: its WHERE keeps all or none
  of a partition's rows, exactly as HAVING keeps or drops the group, and the partition's rows
  project to one distinct row, the group's row. Such expressions are added to GROUP BY (which
  does not split a group, being determined by ``P``).
- DISTINCT is dropped only when every ``P`` column is projected (then the group rows are already
  distinct); otherwise it stays.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("SELECT DISTINCT user_id, n FROM (SELECT e.user_id, count(*) OVER (PARTITION BY e.user_id) AS n "
...        "FROM events AS e) AS s WHERE n > 100")
>>> print(filtered_window_to_having(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT e.user_id, COUNT(*) AS n FROM events AS e GROUP BY e.user_id HAVING COUNT(*) > 100
"""

from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import rewrite_each_select
from sidecar.rules.window_to_group_by import partition_determines, whole_partition

_OUTER_ARGS = frozenset({"expressions", "distinct", "from_", "where", "order"})
_INNER_ARGS = frozenset({"expressions", "from_", "joins", "where"})
_VOLATILE_OR_UNKNOWN = (exp.Anonymous, exp.AnonymousAggFunc, exp.Rand, exp.Randn, exp.Uuid, exp.Explode,
                        exp.Unnest, exp.GenerateSeries, exp.NextValueFor)


def filtered_window_to_having(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    return rewrite_each_select(expression, catalog, _rewrite)


def _rewrite(outer: exp.Select, catalog: Catalog) -> bool:
    distinct = outer.args.get("distinct")
    if not isinstance(distinct, exp.Distinct) or distinct.args.get("on"):
        return False
    if any(value for key, value in outer.args.items() if key not in _OUTER_ARGS):
        return False
    derived = outer.args["from_"].this if outer.args.get("from_") is not None else None
    if not isinstance(derived, exp.Subquery) or not isinstance(derived.this, exp.Select):
        return False
    alias = derived.args.get("alias")
    if alias is None or alias.columns or not alias.name or derived.args.get("lateral"):
        return False
    inner = derived.this
    if any(value for key, value in inner.args.items() if key not in _INNER_ARGS):
        return False

    outputs: dict[str, exp.Expr] = {}
    for projection in inner.expressions:
        name = projection.alias_or_name.lower()
        value = projection.this if isinstance(projection, exp.Alias) else projection
        if not name or name in outputs or projection.is_star:
            return False
        if value.find(exp.Subquery, exp.Query, *_VOLATILE_OR_UNKNOWN):
            return False
        outputs[name] = value
    windows = [w for w in inner.find_all(exp.Window) if w.parent_select is inner]
    if not windows or any(not isinstance(w.parent, exp.Alias) or w.parent.parent is not inner for w in windows):
        return False  # every window is a whole SELECT item
    if any(not isinstance(a.parent, exp.Window) for a in inner.find_all(exp.AggFunc) if a.parent_select is inner):
        return False
    partition = whole_partition(windows)
    if partition is None:
        return False
    determines = partition_determines(inner, partition, catalog)
    if determines is None:
        return False

    where = outer.args.get("where")
    if where is not None and where.find(exp.Subquery, exp.Query, exp.AggFunc, exp.Window, *_VOLATILE_OR_UNKNOWN):
        return False
    output_names = {p.alias_or_name.lower() for p in outer.expressions}
    mapped: dict[int, exp.Expr] = {}
    for column in _outer_columns(outer, output_names):
        if column.table and column.table.lower() != alias.name.lower():
            return False
        value = outputs.get(column.name.lower())
        if value is None:
            return False
        if not isinstance(value, exp.Window) and not all(determines(c) for c in value.find_all(exp.Column)):
            return False
        mapped[id(column)] = value

    group_by: list[exp.Expr] = [c.copy() for c in partition]
    grouped = {c.sql(dialect="postgres") for c in group_by}
    for value in mapped.values():
        if not isinstance(value, exp.Window) and value.sql(dialect="postgres") not in grouped:
            grouped.add(value.sql(dialect="postgres"))
            group_by.append(value.copy())

    projections: list[exp.Expr] = []
    for projection in outer.expressions:
        column = projection.this if isinstance(projection, exp.Alias) else projection
        if not isinstance(column, exp.Column) or id(column) not in mapped:
            return False
        value = _aggregate_form(mapped[id(column)])
        name = projection.args["alias"] if isinstance(projection, exp.Alias) else column.this
        if isinstance(value, exp.Column) and value.this == name:
            projections.append(value)
        else:
            projections.append(exp.Alias(this=value, alias=name.copy()))

    having = _substituted(where.this, mapped) if where is not None else None
    order = outer.args.get("order")
    if order is not None:
        order = order.copy()
        for ordered, original in zip(order.expressions, outer.args["order"].expressions, strict=True):
            ordered.set("this", _substituted(original.this, mapped))

    projected = {(p.this if isinstance(p, exp.Alias) else p).sql(dialect="postgres") for p in projections}
    keep_distinct = not all(c.sql(dialect="postgres") in projected for c in partition)
    outer.set("expressions", projections)
    outer.set("distinct", exp.Distinct() if keep_distinct else None)
    outer.set("from_", inner.args["from_"].copy())
    outer.set("joins", [join.copy() for join in inner.args.get("joins") or []] or None)
    outer.set("where", inner.args["where"].copy() if inner.args.get("where") is not None else None)
    outer.set("group", exp.Group(expressions=group_by))
    outer.set("having", exp.Having(this=having) if having is not None else None)
    outer.set("order", order)
    return True


def _outer_columns(outer: exp.Select, output_names: set[str]) -> list[exp.Column]:
    """Every column the outer query reads from the derived table. A bare ORDER BY name that is an
    output column's name refers to that output (PostgreSQL's rule), so it is read through the
    SELECT list and left as written."""
    columns: list[exp.Column] = []
    for projection in outer.expressions:
        columns.extend(projection.find_all(exp.Column))
    where = outer.args.get("where")
    if where is not None:
        columns.extend(where.find_all(exp.Column))
    order = outer.args.get("order")
    for ordered in order.expressions if order is not None else []:
        key = ordered.this
        if isinstance(key, exp.Column) and not key.table and key.name.lower() in output_names:
            continue
        columns.extend(key.find_all(exp.Column))
    return columns


def _aggregate_form(value: exp.Expr) -> exp.Expr:
    """An inner output with its windows replaced by their (plain) aggregates."""
    value = value.copy()
    if isinstance(value, exp.Window):
        aggregate: exp.Expr = value.this
        return aggregate
    for window in list(value.find_all(exp.Window)):
        window.replace(window.this)
    return value


def _substituted(node: exp.Expr, mapped: dict[int, exp.Expr]) -> exp.Expr:
    """A copy of ``node`` with every mapped outer column replaced by the inner output it reads."""
    if id(node) in mapped:
        return _aggregate_form(mapped[id(node)])
    copy = node.copy()
    pairs = list(zip(list(node.find_all(exp.Column)), list(copy.find_all(exp.Column)), strict=True))
    for original, duplicate in pairs:
        if id(original) in mapped:
            replacement = _aggregate_form(mapped[id(original)])
            if duplicate is copy:
                return replacement
            duplicate.replace(exp.paren(replacement, copy=False) if _needs_parens(replacement) else replacement)
    return copy


def _needs_parens(node: exp.Expr) -> bool:
    return isinstance(node, (exp.Binary, exp.Not, exp.Neg))
