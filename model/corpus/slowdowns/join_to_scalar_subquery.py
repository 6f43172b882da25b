"""``… JOIN d AS a ON a.k = x`` whose columns are only selected → one correlated scalar subquery
per selected column, and an EXISTS for the join's filtering.

This is LASER's own example of a reverse-optimizer step ("transforming standard equi-joins into
correlated subqueries to impede set-oriented processing"): ``SELECT o.id, a.name FROM orders AS o
JOIN products AS a ON a.id = o.product_id`` becomes ``SELECT o.id, (SELECT a.name FROM products AS
a WHERE a.id = o.product_id) AS name FROM orders AS o WHERE EXISTS (SELECT 1 FROM products AS a
WHERE a.id = o.product_id)``.

Why it is slower: the join is planned once (hash or merge over both sides); each scalar subquery
and the EXISTS are SubPlans probed per outer row (the EXISTS may be pulled up into a semi-join,
the scalar subqueries cannot). No rules-backend rule undoes it.

Why it is equivalent: ``k`` is a key of ``d`` (primary key, or unique over NOT NULL columns), so
each outer row matches at most one ``d`` row. The inner join keeps the outer rows that match one,
which is what the EXISTS keeps, and each selected ``a.c`` is that row's value, which is what the
scalar subquery returns (one row at most, so it never fails). Preconditions (any failure: not
applied): an inner JOIN … ON (not the first FROM item, not LATERAL) whose ON is exactly
``a.k = x`` (either order) with ``x`` free of ``a``, of subqueries and of unqualified columns;
``a``'s columns appear only in the SELECT list, qualified, never as ``a.*``, and not inside
aggregates or window functions; the SELECT has no GROUP BY, HAVING or ``*``.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> products = Table("public", "products", (Column("id", "integer", False), Column("name", "text", False)), ("id",))
>>> sql = "SELECT o.id, p.name FROM orders AS o JOIN products AS p ON p.id = o.product_id WHERE o.quantity > 3"
>>> print(join_to_scalar_subquery(sqlglot.parse_one(sql, read="postgres"), Catalog({"public.products": products})).sql(dialect="postgres"))
SELECT o.id, (SELECT p.name FROM products AS p WHERE p.id = o.product_id) AS name FROM orders AS o WHERE o.quantity > 3 AND EXISTS(SELECT 1 FROM products AS p WHERE p.id = o.product_id)
>>> grouped = "SELECT p.name, count(*) FROM orders AS o JOIN products AS p ON p.id = o.product_id GROUP BY p.name"
>>> join_to_scalar_subquery(sqlglot.parse_one(grouped, read="postgres"), Catalog({"public.products": products})) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, catalog_table, conjuncts


def join_to_scalar_subquery(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        fired = _rewrite(select, catalog) or fired
    return tree if fired else None


def _rewrite(select: exp.Select, catalog: Catalog) -> bool:
    if select.args.get("group") or select.args.get("having") or any(
            isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
            for p in select.expressions):
        return False
    for join in select.args.get("joins") or []:
        found = _probe(join, select, catalog)
        if found is None:
            continue
        alias, table_node, key_match = found
        _replace(select, join, alias, table_node, key_match)
        return True
    return False


def _probe(join: exp.Join, select: exp.Select, catalog: Catalog) -> tuple[str, exp.Table, exp.EQ] | None:
    node = join.this
    if not isinstance(node, exp.Table) or join.side or join.kind not in ("", "INNER", None) or join.args.get("using"):
        return None
    if join.args.get("lateral") or not node.name:
        return None
    table = catalog_table(node, catalog)
    on = join.args.get("on")
    if table is None or on is None:
        return None
    alias = node.alias_or_name.lower()
    [condition] = conjuncts(on) if len(conjuncts(on)) == 1 else [None]
    if not isinstance(condition, exp.EQ):
        return None
    for mine, other in ((condition.this, condition.expression), (condition.expression, condition.this)):
        if not (isinstance(mine, exp.Column) and mine.table.lower() == alias):
            continue
        if (mine.name.lower(),) not in table.keys or other.find(exp.Query):
            return None
        if any(not c.table or c.table.lower() == alias for c in other.find_all(exp.Column)):
            return None
        if not _only_selected(select, join, alias):
            return None
        return alias, node, exp.EQ(this=mine.copy(), expression=other.copy())
    return None


def _only_selected(select: exp.Select, join: exp.Join, alias: str) -> bool:
    uses = [c for c in select.find_all(exp.Column) if c.table.lower() == alias and not _in_join(c, join)]
    for column in uses:
        projection = column
        while projection.parent is not select:
            projection = projection.parent  # type: ignore[assignment]
            if isinstance(projection, (exp.Query, exp.AggFunc, exp.Window)):
                return False
        if projection.arg_key != "expressions":
            return False
    return bool(uses)


def _in_join(column: exp.Column, join: exp.Join) -> bool:
    parent = column.parent
    while parent is not None:
        if parent is join:
            return True
        parent = parent.parent
    return False


def _replace(select: exp.Select, join: exp.Join, alias: str, table_node: exp.Table, key_match: exp.EQ) -> None:
    def lookup(column: exp.Column) -> exp.Subquery:
        inner = exp.select(column.copy()).from_(table_node.copy()).where(key_match.copy())
        return exp.Subquery(this=inner)

    projections = []
    for projection in select.expressions:
        if isinstance(projection, exp.Column) and projection.table.lower() == alias:
            projections.append(exp.Alias(this=lookup(projection), alias=exp.to_identifier(projection.name)))
            continue
        for column in list(projection.find_all(exp.Column)):
            if column.table.lower() == alias:
                column.replace(lookup(column))
        projections.append(projection)
    select.set("expressions", projections)
    select.set("joins", [j for j in select.args["joins"] if j is not join] or None)
    exists = exp.Exists(this=exp.select(exp.Literal.number(1)).from_(table_node.copy()).where(key_match.copy()))
    where = select.args.get("where")
    select.set("where", exp.Where(this=and_all([*(c.copy() for c in conjuncts(where.this if where else None)),
                                                exists])))
