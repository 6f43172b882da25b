"""Replace correlated scalar aggregate subqueries by pre-aggregated derived tables joined once.

PostgreSQL runs a correlated scalar subquery as a SubPlan per outer row; grouping the inner table
by the correlation key once and LEFT JOINing the result turns N index probes into one scan.

Constraints relied on:

- The subquery is ``SELECT <aggregate expression> FROM <one base table or CTE> WHERE <conjuncts>``
  with no GROUP BY, HAVING, DISTINCT, ORDER BY, LIMIT or nested subquery, in the WHERE of the outer
  query, or in its SELECT list when the outer query has no GROUP BY, HAVING or aggregates.
- Correlation only through equalities ``inner_column = outer_column``; the other conjuncts
  reference the inner table alone (unqualified names must resolve to it in the catalog, or to the
  CTE's named output columns; a CTE whose outputs are not all named, or a recursive one, is
  refused). The derived table reads the CTE by name, inside the CTE's scope (TPC-DS Q1, Q30, Q81:
  ``avg`` over the same CTE per store or state).
- The derived table is grouped by exactly the correlation columns, so the LEFT JOIN matches at
  most one row and never duplicates or drops outer rows; a NULL key matches nothing, like the
  subquery's ``inner = NULL``.
- Over no rows ``count`` gives 0 but the LEFT JOIN gives NULL: COUNT → COALESCE(..., 0) via LEFT
  JOIN, and ``count`` is only accepted as the whole expression. Other aggregates (sum, avg, min,
  max) are NULL over no rows and may sit inside NULL-propagating arithmetic, round, abs or casts.
- Subqueries over the same table with the same correlation share one derived table; differing
  extra conditions become ``FILTER (WHERE ...)`` on each aggregate and their OR the derived WHERE.
  Identical subqueries share one column.
- Comma joins in the outer FROM become CROSS JOINs so the appended ON clause may reference every
  outer table.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("user_id", "integer", False),))
>>> sql = "SELECT u.id, (SELECT count(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u"
>>> tree = sqlglot.parse_one(sql, read="postgres")
>>> print(decorrelate_scalar_aggregates(tree, Catalog({"public.orders": orders})).sql(dialect="postgres"))
SELECT u.id, COALESCE(agg_1.value_1, 0) AS n FROM users AS u LEFT JOIN (SELECT o.user_id AS key_1, COUNT(*) AS value_1
FROM orders AS o GROUP BY o.user_id) AS agg_1 ON agg_1.key_1 = u.id
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import (
    and_all,
    catalog_table,
    conjuncts,
    cte_columns,
    fresh_name,
    resolve_column,
    rewrite_each_select,
    source_names,
)
from sidecar.rules.declines import decline

_AGGREGATES = (exp.Sum, exp.Avg, exp.Min, exp.Max)
# Nodes through which a NULL aggregate result stays NULL (so a missing LEFT JOIN row is harmless).
_NULL_PROPAGATING = (
    exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Paren, exp.Round, exp.Abs, exp.Cast,
    exp.Literal, exp.DataType, exp.Column, exp.Identifier, exp.Star, exp.Distinct,
)
_NOT_ALLOWED_IN_INNER = ("with_", "group", "having", "distinct", "order", "limit", "offset", "joins",
                         "qualify", "windows", "laterals", "locks")


@dataclass
class _Match:
    subquery: exp.Subquery
    table: exp.Table
    value: exp.Expr
    """The aggregate expression, columns requalified to the group's alias."""
    correlation: tuple[tuple[str, str], ...]
    """Sorted (inner column name, outer expression SQL) pairs."""
    outer: dict[str, exp.Expr]
    """Outer expression SQL → expression."""
    residual: exp.Expr | None
    is_count: bool


@dataclass
class _Group:
    alias: str
    table: exp.Table
    correlation: tuple[tuple[str, str], ...]
    outer: dict[str, exp.Expr]
    matches: list[_Match] = field(default_factory=list)


def decorrelate_scalar_aggregates(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    return rewrite_each_select(expression, catalog, _decorrelate)


def _decorrelate(outer: exp.Select, catalog: Catalog) -> bool:
    if outer.args.get("from_") is None:
        return False
    # Grouped outer queries: only WHERE subqueries, evaluated before grouping, can move to a join.
    grouped = bool(outer.args.get("group") or outer.args.get("having")) or any(
        node.parent_select is outer and not node.find_ancestor(exp.Window, exp.Subquery)
        for node in outer.find_all(exp.AggFunc)
    )
    outer_sources = source_names(outer)
    matches: list[_Match] = []
    for subquery in list(outer.find_all(exp.Subquery)):
        if subquery.parent_select is not outer or isinstance(
            subquery.parent, (exp.From, exp.Join, exp.In, exp.Any, exp.All, exp.Exists)
        ):
            continue
        in_where = subquery.find_ancestor(exp.Where) is not None and (
            subquery.find_ancestor(exp.Where).parent_select is outer  # type: ignore[union-attr]
        )
        if not (in_where or (not grouped and _in_projection(subquery, outer))):
            continue
        match = _match(subquery, outer, catalog)
        if match is not None:
            matches.append(match)
    if not matches:
        return False

    groups: dict[tuple[str, tuple[tuple[str, str], ...]], _Group] = {}
    taken = set(outer_sources)
    for match in matches:
        key = (_table_key(match.table), match.correlation)
        group = groups.get(key)
        if group is None:
            alias = fresh_name("agg", taken)
            group = groups[key] = _Group(alias, match.table, match.correlation, match.outer)
        group.matches.append(match)

    _explicit_cross_joins(outer)
    for group in groups.values():
        _attach(outer, group)
    return True


def _in_projection(node: exp.Expr, select: exp.Select) -> bool:
    return any(node is projection or node in projection.find_all(exp.Subquery)
               for projection in select.expressions)


def _match(subquery: exp.Subquery, outer: exp.Select, catalog: Catalog) -> _Match | None:
    outer_sources = source_names(outer)
    inner = subquery.this
    if not isinstance(inner, exp.Select) or len(inner.expressions) != 1:
        return None
    if any(inner.args.get(arg) for arg in _NOT_ALLOWED_IN_INNER):
        return None
    from_ = inner.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table) or not from_.this.name:
        return None
    table_node = from_.this
    inner_alias = table_node.alias_or_name.lower()
    table = cte_columns(table_node)  # a CTE of the statement shadows a table of the same name
    if table is None:
        table = catalog_table(table_node, catalog)
    if table is None:
        return None
    if next(inner.find_all(exp.Subquery, exp.Exists), None) is not None:
        return None

    def is_inner(column: exp.Column) -> bool:
        if column.table:
            return column.table.lower() == inner_alias
        return table.column(column.name) is not None

    value = inner.expressions[0]
    if isinstance(value, exp.Alias):
        value = value.this
    if any(not is_inner(c) for c in value.find_all(exp.Column)):
        return None
    is_count = isinstance(value, exp.Count)
    if not is_count and not _null_propagating_aggregate(value):
        decline(f"correlated {value.sql(dialect='postgres')}: only sum/avg/min/max under NULL-propagating "
                "arithmetic, or count(…) alone, keep their value over no rows when moved to a LEFT JOIN")
        return None

    correlation: dict[tuple[str, str], exp.Expr] = {}
    residual: list[exp.Expr] = []
    for conjunct in conjuncts(inner.args["where"].this if inner.args.get("where") else None):
        columns = list(conjunct.find_all(exp.Column))
        inner_columns = [c for c in columns if is_inner(c)]
        if len(inner_columns) == len(columns):
            residual.append(conjunct)
            continue
        if not isinstance(conjunct, exp.EQ):
            decline(f"correlated by {conjunct.sql(dialect='postgres')}, not by column equalities: no grouping "
                    "key to aggregate by once")
            return None
        for inner_side, outer_side in ((conjunct.left, conjunct.right), (conjunct.right, conjunct.left)):
            if (
                isinstance(inner_side, exp.Column) and is_inner(inner_side)
                and isinstance(outer_side, exp.Column) and not is_inner(outer_side)
            ):
                if not outer_side.table:
                    resolved = resolve_column(outer_side, outer, catalog)
                    if resolved is None:
                        return None
                    outer_side = exp.column(outer_side.name, table=resolved[0])
                if outer_side.table.lower() not in outer_sources:
                    return None
                correlation[(inner_side.name.lower(), outer_side.sql(dialect="postgres"))] = outer_side
                break
        else:
            return None
    if not correlation:
        return None
    return _Match(
        subquery=subquery,
        table=table_node,
        value=value,
        correlation=tuple(sorted(correlation)),
        outer={sql: node for (_, sql), node in correlation.items()},
        residual=and_all(list(residual)),
        is_count=is_count,
    )


def _null_propagating_aggregate(value: exp.Expr) -> bool:
    has_aggregate = False
    for node in value.walk():
        if isinstance(node, _AGGREGATES):
            has_aggregate = True
        elif isinstance(node, exp.AggFunc) or not isinstance(node, _NULL_PROPAGATING):
            return False
    return has_aggregate


def _table_key(table: exp.Table) -> str:
    return ".".join(part.name.lower() for part in table.parts)


def _requalify(node: exp.Expr, old: str, new: str) -> exp.Expr:
    node = node.copy()
    for column in node.find_all(exp.Column):
        if column.table and column.table.lower() == old:
            column.set("table", exp.to_identifier(new))
    return node


def _with_filter(value: exp.Expr, condition: exp.Expr) -> exp.Expr:
    def add_filter(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.AggFunc):
            return exp.Filter(this=node.copy(), expression=exp.Where(this=condition.copy()))
        return node

    return value.copy().transform(add_filter, copy=False)


def _explicit_cross_joins(select: exp.Select) -> None:
    for join in select.args.get("joins") or []:
        if not join.args.get("on") and not join.args.get("using") and not join.kind and not join.side:
            join.set("kind", "CROSS")


def _attach(outer: exp.Select, group: _Group) -> None:
    canonical = group.matches[0].table.alias_or_name
    residual_sql: dict[str, exp.Expr | None] = {}
    for match in group.matches:
        match_alias = match.table.alias_or_name.lower()
        residual = _requalify(match.residual, match_alias, canonical) if match.residual else None
        match.residual = residual
        match.value = _requalify(match.value, match_alias, canonical)
        residual_sql[residual.sql(dialect="postgres") if residual else ""] = residual
    shared_residual = len(residual_sql) == 1

    inner_columns = sorted({inner for inner, _ in group.correlation})
    key_alias = {name: f"key_{i}" for i, name in enumerate(inner_columns, start=1)}
    projections: list[exp.Expr] = [
        exp.alias_(exp.column(name, table=canonical), key_alias[name]) for name in inner_columns
    ]
    value_alias: dict[str, str] = {}
    for match in group.matches:
        value = match.value
        if not shared_residual and match.residual is not None:
            value = _with_filter(value, match.residual)
        signature = value.sql(dialect="postgres")
        if signature not in value_alias:
            value_alias[signature] = f"value_{len(value_alias) + 1}"
            projections.append(exp.alias_(value, value_alias[signature]))
        reference: exp.Expr = exp.column(value_alias[signature], table=group.alias)
        if match.is_count:
            reference = exp.func("COALESCE", reference, exp.Literal.number(0))
        match.subquery.replace(reference)

    if shared_residual:
        where = next(iter(residual_sql.values()))
    elif all(residual is not None for residual in residual_sql.values()):
        where = exp.or_(*[exp.paren(r.copy()) for r in residual_sql.values() if r is not None])
    else:
        where = None
    table = group.table.copy()
    renamed = table.alias or canonical.lower() != table.name.lower()
    table.set("alias", exp.TableAlias(this=exp.to_identifier(canonical)) if renamed else None)
    derived = exp.select(*projections).from_(table)
    if where is not None:
        derived = derived.where(where.copy())
    derived = derived.group_by(*[exp.column(name, table=canonical) for name in inner_columns])

    on = and_all([
        exp.EQ(this=exp.column(key_alias[inner], table=group.alias), expression=group.outer[outer_sql].copy())
        for inner, outer_sql in group.correlation
    ])
    outer.join(derived.subquery(group.alias), on=on, join_type="LEFT", copy=False)
