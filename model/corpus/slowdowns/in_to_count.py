"""``x IN (SELECT y FROM … WHERE p)`` in a top-level WHERE conjunct →
``(SELECT COUNT(*) FROM … WHERE p AND y = x) > 0``.

Why it is slower: an IN subquery becomes a semi-join (hashed once); the COUNT subquery is
correlated on ``x`` and runs once per outer row, counting every match. Undone by turning the
count back into IN or EXISTS (no rules-backend rule does).

Why it is equivalent, and only where it is applied: ``x IN (S)`` is TRUE exactly when some row
of S has ``y = x`` TRUE, which is when that count is above zero. Otherwise IN is FALSE or NULL
(NULLs in ``x`` or ``y``) while the count is 0 (FALSE): the two differ only between NULL and
FALSE, which a top-level WHERE conjunct treats alike (both reject the row). So only IN
predicates that are whole conjuncts of a WHERE are rewritten, never under NOT or OR or in a
SELECT list. The subquery must be a simple SELECT with one output column, and every column of
``x`` must keep its meaning once moved inside: qualified by a name the subquery does not itself
define, or unqualified, resolved to an outer catalog table, and a column of none of the
subquery's tables (else moving ``x`` inside would capture it).

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT p.id FROM products AS p WHERE p.price > 10 AND p.id IN (SELECT o.product_id FROM orders AS o WHERE o.quantity > 3)"
>>> print(in_to_count(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT p.id FROM products AS p WHERE p.price > 10 AND (SELECT COUNT(*) FROM orders AS o WHERE o.quantity > 3 AND o.product_id = p.id) > 0
>>> under_or = "SELECT p.id FROM products AS p WHERE p.price > 10 OR p.id IN (SELECT o.product_id FROM orders AS o)"
>>> in_to_count(sqlglot.parse_one(under_or, read="postgres"), Catalog()) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import simple_select
from model.corpus.slowdowns.exists_to_count import count_of
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, catalog_table, conjuncts, resolve_column, source_names


def in_to_count(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        where = select.args.get("where")
        if where is None:
            continue
        parts = conjuncts(where.this)
        changed = False
        for index, part in enumerate(parts):
            rewritten = _counted(part, select, catalog)
            if rewritten is not None:
                parts[index] = rewritten
                changed = True
        if changed:
            select.set("where", exp.Where(this=and_all([p.copy() for p in parts])))
            fired = True
    return tree if fired else None


def _counted(predicate: exp.Expr, outer: exp.Select, catalog: Catalog) -> exp.Expr | None:
    if not isinstance(predicate, exp.In):
        return None
    query = predicate.args.get("query")
    subquery = query.this if isinstance(query, exp.Subquery) else query
    if not isinstance(subquery, exp.Select) or not simple_select(subquery) or len(subquery.expressions) != 1:
        return None
    value = predicate.this
    if isinstance(value, exp.Tuple):
        return None
    inner_names = source_names(subquery) | {t.alias_or_name.lower() for t in subquery.find_all(exp.Table)}
    columns = list(value.find_all(exp.Column))
    if value.find(exp.Query) or any(c.table.lower() in inner_names if c.table
                                    else not _stays_outer(c, outer, subquery, catalog) for c in columns):
        return None
    item = subquery.expressions[0]
    item = item.this if isinstance(item, exp.Alias) else item
    if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
        return None
    inner = subquery.copy()
    where = inner.args.get("where")
    match = exp.EQ(this=item.copy(), expression=value.copy())
    inner.set("where", exp.Where(this=and_all([*(c.copy() for c in conjuncts(where.this if where else None)), match])))
    return exp.GT(this=count_of(inner), expression=exp.Literal.number(0))


def _stays_outer(column: exp.Column, outer: exp.Select, subquery: exp.Select, catalog: Catalog) -> bool:
    """An unqualified column of the outer SELECT keeps its meaning inside the subquery: it resolves
    to one of the outer FROM items, and no FROM item of the subquery (all catalog tables) has a
    column of that name."""
    if resolve_column(column, outer, catalog) is None:
        return False
    tables = list(subquery.find_all(exp.Table))
    if len(tables) != len(source_names(subquery)):
        return False
    for node in tables:
        table = catalog_table(node, catalog)
        if table is None or table.column(column.name) is not None:
            return False
    return True
