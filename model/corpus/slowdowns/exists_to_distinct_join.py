"""``SELECT a.* FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.k = a.x AND p)`` → ``SELECT DISTINCT a.*
FROM a, b WHERE b.k = a.x AND p``. The inverse of the rules backend's ``distinct_join_to_exists``.

Why it is slower: the semi-join stops at the first match per row of ``a``; the join produces one
row per match (a one-to-many fan-out), and DISTINCT then sorts or hashes every wide joined row to
remove the copies again.

Why it is equivalent: the joined rows, projected to ``a``'s columns, are the rows of ``a`` that
have a match, each repeated once per match; DISTINCT leaves one of each. That equals the original
when the original's rows were distinct already: it has DISTINCT itself, or every table of its FROM
projects a key (``t.*`` or all primary-key columns, per the catalog). Preconditions: the EXISTS is
a top-level WHERE conjunct; both the outer SELECT and the subquery are simple SELECTs over base
tables joined by commas or inner joins; every column of both is qualified; the subquery's FROM
names none of the outer ones; an outer ORDER BY, if any, uses only selected expressions.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> users = Table("public", "users", (Column("id", "integer", False),), ("id",))
>>> sql = "SELECT u.* FROM users AS u WHERE u.id < 10 AND EXISTS(SELECT 1 FROM orders AS o WHERE o.user_id = u.id)"
>>> print(exists_to_distinct_join(sqlglot.parse_one(sql, read="postgres"), Catalog({"public.users": users})).sql(dialect="postgres"))
SELECT DISTINCT u.* FROM users AS u, orders AS o WHERE u.id < 10 AND o.user_id = u.id
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import simple_select
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, catalog_table, conjuncts, source_names


def exists_to_distinct_join(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    for select in list(tree.find_all(exp.Select)):
        if _rewrite(select, catalog):
            return tree
    return None


def _rewrite(select: exp.Select, catalog: Catalog) -> bool:
    if not simple_select(select) or not _inner_tables(select) or not _qualified(select, select):
        return False
    if not select.args.get("distinct") and not _projects_keys(select, catalog):
        return False
    order = select.args.get("order")
    selected = {(p.this if isinstance(p, exp.Alias) else p).sql(dialect="postgres") for p in select.expressions}
    aliases = {p.alias.lower() for p in select.expressions if isinstance(p, exp.Alias)}
    if order is not None and any(o.this.sql(dialect="postgres") not in selected and o.this.sql().lower() not in aliases
                                 for o in order.expressions):
        return False
    where = select.args.get("where")
    parts = conjuncts(where.this if where is not None else None)
    for index, part in enumerate(parts):
        sub = part.this if isinstance(part, exp.Exists) else None
        if not isinstance(sub, exp.Select) or not simple_select(sub) or not _inner_tables(sub):
            continue
        if source_names(sub) & source_names(select) or not _qualified(sub, sub):
            continue
        inner_where = sub.args.get("where")
        moved = conjuncts(inner_where.this if inner_where is not None else None)
        kept = [p.copy() for i, p in enumerate(parts) if i != index] + [p.copy() for p in moved]
        joins = list(select.args.get("joins") or [])
        joins.append(exp.Join(this=sub.args["from_"].this.copy()))
        joins.extend(j.copy() for j in sub.args.get("joins") or [])
        select.set("joins", joins)
        select.set("where", exp.Where(this=and_all(kept)) if kept else None)
        select.set("distinct", exp.Distinct())
        return True
    return False


def _inner_tables(select: exp.Select) -> bool:
    items = [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]
    if not all(isinstance(item, exp.Table) and item.name for item in items):
        return False
    return all(not j.side and (j.kind or "").upper() in ("", "INNER", "CROSS") and not j.args.get("using")
               for j in select.args.get("joins") or [])


def _qualified(node: exp.Expr, select: exp.Select) -> bool:
    return all(c.table for c in node.find_all(exp.Column) if c.parent_select is select)


def _projects_keys(select: exp.Select, catalog: Catalog) -> bool:
    items = [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]
    for item in items:
        alias = item.alias_or_name.lower()
        table = catalog_table(item, catalog)
        if table is None:
            return False
        projected = {p.name.lower() for p in select.expressions if isinstance(p, exp.Column) and p.table.lower() == alias}
        star = any(isinstance(p, exp.Column) and isinstance(p.this, exp.Star) and p.table.lower() == alias
                   for p in select.expressions)
        if not star and not any(set(key) <= projected for key in table.keys):
            return False
    return True
