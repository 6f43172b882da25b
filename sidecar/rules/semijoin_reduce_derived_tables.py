"""Aggregate only the keys the outer query keeps: a grouped derived table joined on its grouping key
gets ``key IN (SELECT c FROM t WHERE <t's filters>)`` (semi-join reduction, "magic sets").

PostgreSQL pushes a join condition into a grouped subquery only as a parameterized nested loop, which
it rarely picks; otherwise it aggregates the whole input and joins afterwards. When the outer query
filters the table the derived table joins (TPC-H Q17 after decorrelation: ``avg(l_quantity)`` per
part, outer query keeping only one brand and container), most groups are computed for nothing.
Restricting the derived table's input to the keys that can survive the outer filters aggregates
hundreds of rows instead of the whole fact table. Both forms stay candidates (the search keeps the
unreduced parent), and execution decides which is faster.

Constraints relied on (each checked; the rule leaves a SELECT alone when any fails):

- The outer SELECT joins with commas, INNER/CROSS and LEFT joins only (no RIGHT/FULL, USING, NATURAL
  or LATERAL), so columns of earlier items are never NULL-extended by later joins.
- The derived table D is a FROM item or an inner-joined item, or the nullable side of its own LEFT
  JOIN. Its query is one SELECT (no set operation, WITH, LIMIT/OFFSET, DISTINCT ON or window
  function) with a plain GROUP BY (no GROUPING SETS/ROLLUP/CUBE). Its output column X is a plain
  column that is one of the GROUP BY items, so a condition on it keeps or removes whole groups.
- X is linked to a column ``T.c`` of a base table or CTE T of the outer FROM by a chain of column
  equalities, each a top-level conjunct of the outer WHERE, of an inner join's ON, or of D's own ON.
  Every output row in which a D row is real satisfies the chain, so that row's X equals ``T.c`` of a
  real T row.
- T is not on the nullable side of an outer join, and has filters: top-level conjuncts of the outer
  WHERE or of an inner join's ON that use T's columns alone, with no subquery, aggregate, window or
  function sqlglot does not know (a user function may be volatile; evaluated a second time, a volatile
  filter could keep other rows).
- Unqualified columns resolve to exactly one source (through the catalog or a CTE's named outputs).

Why it is exact: an output row with a real D row has X = ``T.c`` for a T row that passes T's filters,
so the D rows the reduction removes (X outside that set) appear only in rows that the outer WHERE
rejects anyway, whichever form is run; and since X is a grouping column, the groups that remain are
computed from exactly the same input rows.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("user_id", "integer", False), Column("amount", "numeric", False)))
>>> users = Table("public", "users", (Column("id", "integer", False), Column("country", "text", False)))
>>> catalog = Catalog({"public.orders": orders, "public.users": users})
>>> sql = ("SELECT u.id, t.total FROM users u JOIN (SELECT o.user_id, sum(o.amount) AS total FROM orders o "
...        "GROUP BY o.user_id) t ON t.user_id = u.id WHERE u.country = 'IS'")
>>> tree = semijoin_reduce_derived_tables(sqlglot.parse_one(sql, read="postgres"), catalog)
>>> print(tree.sql(dialect="postgres"))  # doctest: +NORMALIZE_WHITESPACE
SELECT u.id, t.total FROM users AS u JOIN (SELECT o.user_id, SUM(o.amount) AS total FROM orders AS o
WHERE o.user_id IN (SELECT u.id FROM users AS u WHERE u.country = 'IS') GROUP BY o.user_id) AS t
ON t.user_id = u.id WHERE u.country = 'IS'
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import (
    and_all,
    catalog_table,
    conjuncts,
    cte_columns,
    deterministic,
    nullable_sides,
    rewrite_each_select,
)

_MAX_REDUCERS = 2
"""IN conditions added per derived table: each is a semi-join the planner must do before aggregating."""


@dataclass(frozen=True)
class _Source:
    alias: str
    item: exp.Expr
    join: exp.Join | None
    """None for the FROM item."""


def semijoin_reduce_derived_tables(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    return rewrite_each_select(expression, catalog, _reduce)


def _reduce(select: exp.Select, catalog: Catalog) -> bool:
    sources = _sources(select)
    nullable = nullable_sides(select)
    if sources is None or nullable is None:
        return False
    conditions = list(conjuncts(select.args["where"].this if select.args.get("where") else None))
    for source in sources.values():
        if source.join is not None and not (source.join.side or "") and source.join.args.get("on"):
            conditions.extend(conjuncts(source.join.args["on"]))
    tables = {alias: s for alias, s in sources.items() if isinstance(s.item, exp.Table)}
    owner = _Owner(select, sources, catalog)
    filters: dict[str, list[exp.Expr]] = {}
    for condition in conditions:
        alias = owner.single_table(condition)
        if alias in tables and alias not in nullable and deterministic(condition):
            filters.setdefault(alias, []).append(condition)
    if not filters:
        return False

    fired = False
    for alias, source in sources.items():
        if not isinstance(source.item, exp.Subquery):
            continue
        if source.join is not None and (source.join.side or "").upper() not in ("", "LEFT"):
            continue
        if alias in nullable and (source.join is None or (source.join.side or "").upper() != "LEFT"):
            continue
        inner = _grouped_select(source.item)
        if inner is None:
            continue
        links = list(conditions)
        if source.join is not None and (source.join.side or "").upper() == "LEFT" and source.join.args.get("on"):
            links.extend(conjuncts(source.join.args["on"]))
        classes = _equality_classes(links, owner)
        reducers: list[exp.Expr] = []
        for output, key in _grouping_outputs(inner).items():
            for table_alias, column in sorted(classes.get((alias, output), set())):
                if table_alias == alias or table_alias not in filters or len(reducers) >= _MAX_REDUCERS:
                    continue
                reducers.append(_in_condition(key, tables[table_alias].item, column, filters[table_alias]))
        if reducers:
            where = inner.args.get("where")
            inner.where(and_all([*([where.this.copy()] if where else []), *reducers]), append=False, copy=False)
            fired = True
    return fired


def _sources(select: exp.Select) -> dict[str, _Source] | None:
    from_ = select.args.get("from_")
    if from_ is None:
        return None
    items = [_Source(from_.this.alias_or_name.lower(), from_.this, None)]
    for join in select.args.get("joins") or []:
        if join.args.get("using") or join.args.get("method") or (join.kind or "").upper() not in ("", "INNER", "CROSS"):
            return None
        if (join.side or "").upper() not in ("", "LEFT"):
            return None
        items.append(_Source(join.this.alias_or_name.lower(), join.this, join))
    if select.args.get("laterals") or any(isinstance(s.item, exp.Lateral) or not s.alias for s in items):
        return None
    by_alias = {s.alias: s for s in items}
    return by_alias if len(by_alias) == len(items) else None


class _Owner:
    """Which FROM item a column of the outer SELECT belongs to."""

    def __init__(self, select: exp.Select, sources: dict[str, _Source], catalog: Catalog) -> None:
        self.sources = sources
        self.columns: dict[str, set[str] | None] = {}
        for alias, source in sources.items():
            if isinstance(source.item, exp.Table):
                table = cte_columns(source.item) or catalog_table(source.item, catalog)
                self.columns[alias] = {c.name.lower() for c in table.columns} if table else None
            elif isinstance(source.item, exp.Subquery) and isinstance(source.item.this, exp.Select):
                names = [p.alias_or_name.lower() for p in source.item.this.expressions]
                self.columns[alias] = None if any(n in ("", "*") for n in names) else set(names)
            else:
                self.columns[alias] = None

    def of(self, column: exp.Column) -> str | None:
        if column.args.get("db") or column.args.get("catalog"):
            return None
        if column.table:
            alias = column.table.lower()
            return alias if alias in self.sources else None
        if any(names is None for names in self.columns.values()):
            return None
        owners = [alias for alias, names in self.columns.items() if names and column.name.lower() in names]
        return owners[0] if len(owners) == 1 else None

    def single_table(self, condition: exp.Expr) -> str | None:
        """The one source every column of `condition` belongs to (None: several, none, or unknown)."""
        if condition.find(exp.Subquery, exp.Exists, exp.AggFunc, exp.Window) is not None:
            return None
        owners = {self.of(c) for c in condition.find_all(exp.Column)}
        if len(owners) != 1 or None in owners:
            return None
        return next(iter(owners))


def _grouped_select(item: exp.Subquery) -> exp.Select | None:
    inner = item.this
    if not isinstance(inner, exp.Select):
        return None
    if any(inner.args.get(arg) for arg in ("with_", "limit", "offset", "windows", "laterals", "locks", "qualify")):
        return None
    distinct = inner.args.get("distinct")
    if distinct is not None and distinct.args.get("on"):
        return None
    group = inner.args.get("group")
    if group is None or not group.expressions or any(
            group.args.get(kind) for kind in ("grouping_sets", "rollup", "cube")):
        return None
    if inner.find(exp.Window) is not None or inner.args.get("from_") is None:
        return None
    return inner


def _grouping_outputs(inner: exp.Select) -> dict[str, exp.Column]:
    """Output name → the plain column it projects, for outputs that are GROUP BY items."""
    grouped = {g.sql(dialect="postgres") for g in inner.args["group"].expressions if isinstance(g, exp.Column)}
    outputs: dict[str, exp.Column] = {}
    for projection in inner.expressions:
        value = projection.this if isinstance(projection, exp.Alias) else projection
        name = projection.alias_or_name.lower()
        if isinstance(value, exp.Column) and name and value.sql(dialect="postgres") in grouped:
            outputs.setdefault(name, value)
    return outputs


def _equality_classes(links: list[exp.Expr], owner: _Owner) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(source alias, column) → every (alias, column) equal to it through column = column links."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(node: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for link in links:
        if not (isinstance(link, exp.EQ) and isinstance(link.left, exp.Column) and isinstance(link.right, exp.Column)):
            continue
        ends = []
        for column in (link.left, link.right):
            alias = owner.of(column)
            if alias is None:
                break
            ends.append((alias, column.name.lower()))
        if len(ends) == 2:
            parent[find(ends[0])] = find(ends[1])
    classes: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for node in list(parent):
        classes.setdefault(find(node), set()).add(node)
    return {node: classes[find(node)] - {node} for node in parent}


def _in_condition(key: exp.Column, table: exp.Expr, column: str, filters: list[exp.Expr]) -> exp.Expr:
    """``key IN (SELECT alias.column FROM table AS alias WHERE filters)``, filters qualified by the alias."""
    assert isinstance(table, exp.Table)
    alias = table.alias_or_name
    qualified = []
    for condition in filters:
        condition = condition.copy()
        for c in condition.find_all(exp.Column):
            if not c.table:
                c.set("table", exp.to_identifier(alias))
        qualified.append(condition)
    probe = exp.select(exp.column(column, table=alias)).from_(table.copy()).where(and_all(qualified))
    return exp.In(this=key.copy(), query=exp.Subquery(this=probe))
