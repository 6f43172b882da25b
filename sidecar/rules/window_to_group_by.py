"""Replace DISTINCT over partition-wide window aggregates by one GROUP BY.

``SELECT DISTINCT k, count(*) OVER (PARTITION BY k), max(x) OVER (PARTITION BY k) FROM t`` sorts
every row of ``t`` by ``k``, computes each window, then removes the duplicates; ``GROUP BY k``
computes the same values in one hash aggregation.

Constraints relied on:

- A plain ``SELECT DISTINCT`` without GROUP BY, HAVING, LIMIT or plain aggregates; FROM items are
  base tables joined by INNER joins (or commas); every column is qualified.
- Every window is ``count/sum/avg/min/max(...) OVER (PARTITION BY P)`` with the same plain-column
  partition ``P``, no ORDER BY and no frame: its value is the aggregate over the whole partition.
- Every other projected column is functionally dependent on ``P``: a ``P`` column, equal to one
  through an equality conjunct of WHERE/ON, or a column of a table one of whose keys (catalog:
  primary key or unique NOT NULL key) is so determined. Then each group is one partition, and
  the grouped rows are the distinct rows. DISTINCT is kept unless every ``P`` column is projected.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT DISTINCT e.user_id, count(*) OVER (PARTITION BY e.user_id) AS n FROM events e"
>>> print(window_to_group_by(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT e.user_id, COUNT(*) AS n FROM events AS e GROUP BY e.user_id
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import catalog_table, conjuncts, rewrite_each_select

_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
_FORBIDDEN = ("group", "having", "limit", "offset", "qualify", "windows", "laterals", "locks")


def window_to_group_by(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    return rewrite_each_select(expression, catalog, _rewrite)


def _rewrite(select: exp.Select, catalog: Catalog) -> bool:
    distinct = select.args.get("distinct")
    if not isinstance(distinct, exp.Distinct) or distinct.args.get("on"):
        return False
    if any(select.args.get(arg) for arg in _FORBIDDEN) or select.args.get("from_") is None:
        return False

    windows = [w for w in select.find_all(exp.Window) if w.parent_select is select]
    if not windows:
        return False
    partition = whole_partition(windows)
    if partition is None:
        return False
    for aggregate in select.find_all(exp.AggFunc):
        if aggregate.parent_select is select and not isinstance(aggregate.parent, exp.Window):
            return False

    determines = partition_determines(select, partition, catalog)
    if determines is None:
        return False

    group_by: list[exp.Expr] = [c.copy() for c in partition]
    for projection in select.expressions:
        target = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(target, exp.Star) or (isinstance(target, exp.Column) and isinstance(target.this, exp.Star)):
            return False
        if target.find(exp.Window):
            outside = [c for c in target.find_all(exp.Column) if not c.find_ancestor(exp.Window)]
            if outside:
                return False
            continue
        if not all(determines(column) for column in target.find_all(exp.Column)):
            return False
        if target.sql(dialect="postgres") not in {g.sql(dialect="postgres") for g in group_by}:
            group_by.append(target.copy())

    for window in windows:
        window.replace(window.this.copy())
    projected = {
        (p.this if isinstance(p, exp.Alias) else p).sql(dialect="postgres") for p in select.expressions
    }
    if all(c.sql(dialect="postgres") in projected for c in partition):
        select.set("distinct", None)
    select.set("group", exp.Group(expressions=group_by))
    return True


def whole_partition(windows: list[exp.Window]) -> list[exp.Column] | None:
    """The common ``PARTITION BY`` of ``windows`` when each is ``count/sum/avg/min/max(...)`` over a
    whole partition (no ORDER BY, no frame, no named window) and all share one non-empty partition
    of qualified plain columns; else None."""
    partition_sql: str | None = None
    partition: list[exp.Column] = []
    for window in windows:
        if window.args.get("order") or window.args.get("spec") or window.args.get("alias"):
            return None
        if not isinstance(window.this, _AGGREGATES):
            return None
        columns = window.args.get("partition_by") or []
        if not columns or not all(isinstance(c, exp.Column) and c.table for c in columns):
            return None
        signature = ",".join(sorted(c.sql(dialect="postgres") for c in columns))
        if partition_sql is None:
            partition_sql, partition = signature, list(columns)
        elif signature != partition_sql:
            return None
    return partition if partition_sql is not None else None


def partition_determines(
    select: exp.Select, partition: list[exp.Column], catalog: Catalog
) -> Callable[[exp.Column], bool] | None:
    """A test "is this column of ``select``'s FROM rows functionally determined by ``partition``?",
    or None when the FROM items are not base tables joined by INNER joins (or commas).

    Determined: a ``partition`` column; a column equal to a determined one through an equality
    conjunct of WHERE/ON (transitively); a column of a table one of whose keys (catalog: primary
    key or unique NOT NULL key) is determined. Columns must be qualified.
    """
    tables: dict[str, exp.Table] = {}
    equalities: list[tuple[tuple[str, str], tuple[str, str]]] = []
    from_ = select.args.get("from_")
    if from_ is None:
        return None
    for item in [from_.this] + [join.this for join in select.args.get("joins") or []]:
        if not isinstance(item, exp.Table) or not item.name:
            return None
        tables[item.alias_or_name.lower()] = item
    conditions: list[exp.Expr] = []
    for join in select.args.get("joins") or []:
        if join.side or (join.kind and join.kind.upper() not in ("INNER", "CROSS")) or join.args.get("using"):
            return None
        conditions.extend(conjuncts(join.args.get("on")))
    where = select.args.get("where")
    conditions.extend(conjuncts(where.this if where else None))
    for condition in conditions:
        if (
            isinstance(condition, exp.EQ)
            and isinstance(condition.left, exp.Column) and condition.left.table
            and isinstance(condition.right, exp.Column) and condition.right.table
        ):
            equalities.append((_ref(condition.left), _ref(condition.right)))

    determined = {_ref(c) for c in partition}
    whole_tables: set[str] = set()
    changed = True
    while changed:
        changed = False
        for left, right in equalities:
            if (left in determined) != (right in determined):
                determined |= {left, right}
                changed = True
        for alias, node in tables.items():
            table = catalog_table(node, catalog)
            if alias in whole_tables or table is None:
                continue
            if any(all((alias, col) in determined for col in key) for key in table.keys):
                whole_tables.add(alias)
                changed = True

    def determines(column: exp.Column) -> bool:
        ref = _ref(column)
        return bool(column.table) and (ref in determined or ref[0] in whole_tables)

    return determines


def _ref(column: exp.Column) -> tuple[str, str]:
    return (column.table.lower(), column.name.lower())
