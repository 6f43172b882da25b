"""A table joined on its key only to filter → an EXISTS: ``FROM s, d WHERE d.k = s.f AND d.year = 2000``
→ ``FROM s WHERE EXISTS (SELECT 1 FROM d WHERE d.k = s.f AND d.year = 2000)``.

Why it can be slower: the join lets the planner start from the filtered ``d`` (a few dates, one
store) and probe ``s`` through an index or a hash; as a semi-join the filter side is fixed, and
the EXISTS is one more step a later transformation can make correlated (``exists_to_count``
turns it into a per-row count). On its own it is often neutral: the search keeps what the timing
says is slower. Undone by ``distinct_join_to_exists``'s opposite direction in a model's hands; no
rule turns EXISTS back into a join.

Why it is equivalent: ``k`` is a key of ``d`` (primary key, or unique over NOT NULL columns), so
each row of the rest of the FROM matches at most one ``d`` row: the join neither duplicates rows
nor, since no column of ``d`` is used outside the moved conditions, adds values. A row is kept
exactly when a ``d`` row with ``d.k = s.f`` passes ``d``'s own filters, which is the EXISTS.
Preconditions: ``d`` is a base table of the catalog joined by a comma or an inner JOIN (not the
first FROM item, not LATERAL); exactly one WHERE/ON conjunct equates its key column with an
expression over the other FROM items (qualified, no subquery); every other conjunct mentioning
``d`` mentions only ``d``; ``d`` appears nowhere else (SELECT list, GROUP BY, HAVING, ORDER BY,
other joins, subqueries), and no unqualified column could be one of its columns.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> dates = Table("public", "date_dim", (Column("d_date_sk", "integer", False), Column("d_year", "integer", True)), ("d_date_sk",))
>>> sales = Table("public", "store_sales", (Column("item", "integer", False), Column("price", "numeric", True), Column("sold_date_sk", "integer", True)))
>>> sql = "SELECT ss.item, sum(ss.price) FROM store_sales AS ss, date_dim AS d WHERE d.d_date_sk = ss.sold_date_sk AND d.d_year = 2000 GROUP BY ss.item"
>>> print(join_to_exists(sqlglot.parse_one(sql, read="postgres"), Catalog({"public.date_dim": dates, "public.store_sales": sales})).sql(dialect="postgres"))
SELECT ss.item, SUM(ss.price) FROM store_sales AS ss WHERE EXISTS(SELECT 1 FROM date_dim AS d WHERE d.d_date_sk = ss.sold_date_sk AND d.d_year = 2000) GROUP BY ss.item
"""
from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog, Table
from sidecar.rules._scope import and_all, catalog_table, conjuncts, resolve_column


def join_to_exists(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        fired = _rewrite(select, catalog) or fired
    return tree if fired else None


def _rewrite(select: exp.Select, catalog: Catalog) -> bool:
    joins = select.args.get("joins") or []
    from_ = select.args.get("from_")
    if joins and from_ is not None and _comma(joins[0]) and _try(select, from_.this, None, catalog):
        return True  # the first FROM item, with the next one (a comma join) taking its place
    return any(_try(select, join.this, join, catalog) for join in joins if _plain(join))


def _plain(join: exp.Join) -> bool:
    return (not join.side and (join.kind or "").upper() in ("", "INNER", "CROSS") and not join.args.get("using")
            and not join.args.get("lateral"))


def _comma(join: exp.Join) -> bool:
    return _plain(join) and not join.args.get("on") and not join.kind


def _try(select: exp.Select, node: exp.Expr, join: exp.Join | None, catalog: Catalog) -> bool:
    if not isinstance(node, exp.Table) or not node.name:
        return False
    table = catalog_table(node, catalog)
    if table is None:
        return False
    alias = node.alias_or_name.lower()
    owner = _owners(select, catalog)
    if owner is None:
        return False
    where = select.args.get("where")
    on = join.args.get("on") if join is not None else None
    where_parts = conjuncts(where.this if where is not None else None)
    on_parts = conjuncts(on)
    mine = [p for p in where_parts + on_parts if _mentions(p, alias, owner)]
    keys = [p for p in mine if _key_match(p, alias, table, owner)]
    if len(keys) != 1:
        return False
    own = [p for p in mine if p is not keys[0]]
    if any(not _only(p, alias, owner) for p in own):
        return False
    mentioned = {id(c) for p in mine for c in p.find_all(exp.Column)}
    for column in select.find_all(exp.Column):
        if id(column) in mentioned:
            continue
        if column.parent_select is select and owner.get(id(column)) == alias:
            return False  # used outside the conditions that move
        if column.parent_select is not select and (column.table.lower() == alias
                                                   or (not column.table and table.column(column.name))):
            return False  # a nested query might refer to it: left alone
    rest = [p for p in where_parts + on_parts if not any(p is m for m in mine)]
    exists = exp.Exists(this=exp.select(exp.Literal.number(1)).from_(node.copy()).where(
        and_all([keys[0].copy(), *(p.copy() for p in own)])))
    joins = select.args["joins"]
    if join is None:
        select.set("from_", exp.From(this=joins[0].this.copy()))
        remaining = joins[1:]
    else:
        remaining = [j for j in joins if j is not join]
    select.set("joins", remaining or None)
    select.set("where", exp.Where(this=and_all([*(p.copy() for p in rest), exists])))
    return True


def _owners(select: exp.Select, catalog: Catalog) -> dict[int, str] | None:
    """id(column) → the alias of the FROM item it belongs to, for the columns of ``select`` itself
    (qualified or not); None when one of them cannot be resolved (a derived table, an unknown
    table, an ambiguous name)."""
    owners: dict[int, str] = {}
    for column in select.find_all(exp.Column):
        if column.parent_select is not select or isinstance(column.this, exp.Star):
            continue
        resolved = resolve_column(column, select, catalog)
        if resolved is None:
            if column.table:
                continue  # an outer query's alias, or a derived table's: not the joined table
            if _output_alias(column, select):
                continue
            return None
        owners[id(column)] = resolved[0]
    return owners


def _output_alias(column: exp.Column, select: exp.Select) -> bool:
    """An unqualified name that is one of the SELECT list's aliases (ORDER BY / GROUP BY may use them)."""
    return any(isinstance(p, exp.Alias) and p.alias.lower() == column.name.lower() for p in select.expressions)


def _mentions(node: exp.Expr, alias: str, owner: dict[int, str]) -> bool:
    return any(owner.get(id(c)) == alias for c in node.find_all(exp.Column))


def _only(node: exp.Expr, alias: str, owner: dict[int, str]) -> bool:
    return node.find(exp.Query) is None and all(owner.get(id(c)) == alias for c in node.find_all(exp.Column))


def _key_match(part: exp.Expr, alias: str, table: Table, owner: dict[int, str]) -> bool:
    if not isinstance(part, exp.EQ):
        return False
    for mine, other in ((part.this, part.expression), (part.expression, part.this)):
        if (isinstance(mine, exp.Column) and owner.get(id(mine)) == alias
                and (mine.name.lower(),) in table.keys
                and other.find(exp.Query) is None and not _mentions(other, alias, owner)
                and all(id(c) in owner for c in other.find_all(exp.Column))):
            return True
    return False
