"""``NOT EXISTS (SELECT … FROM t WHERE … AND t.y = o.x)`` → ``o.x NOT IN (SELECT t.y FROM t WHERE …)``,
both columns declared NOT NULL. The inverse of the rules backend's ``not_in_to_not_exists``.

Why it is slower: NOT EXISTS becomes an anti-join (hash or merge, or an index probe per row);
PostgreSQL cannot plan NOT IN over a subquery as an anti-join (its NULL semantics), so it runs a
hashed SubPlan, or rescans the subquery per outer row when the set does not fit ``work_mem``.

Why it is equivalent: when neither ``x`` nor ``y`` can be NULL, ``x NOT IN (S)`` is two-valued
and TRUE exactly when no row of S has ``y = x``, which is NOT EXISTS's condition. Preconditions:
the NOT EXISTS is in a WHERE; its subquery is a simple SELECT (no grouping, aggregates, windows,
LIMIT, WITH or set operation); exactly one WHERE conjunct equates a column ``y`` of the
subquery's own base table with a column ``x`` qualified by a FROM item of the enclosing SELECT;
each is declared NOT NULL in the catalog, neither is on the nullable side of an outer join, and
neither table is a CTE.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> users = Table("public", "users", (Column("id", "integer", False),), ("id",))
>>> orders = Table("public", "orders", (Column("user_id", "integer", False), Column("amount", "numeric", False)))
>>> catalog = Catalog({"public.users": users, "public.orders": orders})
>>> sql = "SELECT u.id FROM users AS u WHERE NOT EXISTS(SELECT 1 FROM orders AS o WHERE o.user_id = u.id AND o.amount > 10)"
>>> print(not_exists_to_not_in(sqlglot.parse_one(sql, read="postgres"), catalog).sql(dialect="postgres"))
SELECT u.id FROM users AS u WHERE NOT u.id IN (SELECT o.user_id FROM orders AS o WHERE o.amount > 10)
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import simple_select
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts, not_null_source, source_names


def not_exists_to_not_in(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    fired = False
    for node in reversed(list(tree.find_all(exp.Not, bfs=False))):
        exists = node.this.unnest()
        if not isinstance(exists, exp.Exists) or not isinstance(exists.this, exp.Select):
            continue
        outer = node.parent_select
        if not isinstance(outer, exp.Select) or not _in_where(node, outer):
            continue
        rewritten = _not_in(exists.this, outer, catalog, cte_names)
        if rewritten is not None:
            node.replace(rewritten)
            fired = True
    return tree if fired else None


def _not_in(sub: exp.Select, outer: exp.Select, catalog: Catalog, cte_names: set[str]) -> exp.Expr | None:
    if not simple_select(sub):
        return None
    inner_names = source_names(sub)
    where = sub.args.get("where")
    parts = conjuncts(where.this if where is not None else None)
    matches = []
    for index, part in enumerate(parts):
        if not isinstance(part, exp.EQ):
            continue
        for y, x in ((part.this, part.expression), (part.expression, part.this)):
            if (isinstance(y, exp.Column) and isinstance(x, exp.Column) and y.table.lower() in inner_names
                    and x.table and x.table.lower() not in inner_names
                    and not_null_source(y, sub, catalog, cte_names) is not None
                    and not_null_source(x, outer, catalog, cte_names) is not None):
                matches.append((index, y, x))
                break
    if len(matches) != 1:
        return None
    index, y, x = matches[0]
    kept = [p.copy() for i, p in enumerate(parts) if i != index]
    inner = sub.copy()
    inner.set("expressions", [y.copy()])
    inner.set("distinct", None)
    inner.set("order", None)
    inner.set("where", exp.Where(this=and_all(kept)) if kept else None)
    return exp.Not(this=exp.In(this=x.copy(), query=exp.Subquery(this=inner)))


def _in_where(node: exp.Expr, select: exp.Select) -> bool:
    current: exp.Expr = node
    while isinstance(current.parent, exp.Expr) and current.parent is not select:
        current = current.parent
    return current.parent is select and current.arg_key == "where"
