"""Replace ``SELECT DISTINCT <columns of some tables>`` over inner joins by EXISTS on the others.

A DISTINCT over a one-to-many join first multiplies rows (sorting or hashing each wide joined row)
and then removes the copies again; a semi-join (EXISTS) never creates them.

Constraints relied on:

- A plain ``SELECT DISTINCT`` (not ``DISTINCT ON``) without GROUP BY, HAVING, aggregates, window
  functions or LIMIT, whose FROM items are base tables joined by INNER joins (or commas).
- Every column is qualified. The tables whose columns appear in SELECT/ORDER BY are kept; the
  others move into one ``EXISTS (SELECT 1 FROM ... WHERE ...)`` with every condition that
  mentions them; the remaining conditions stay. Splitting conjuncts is exact for inner joins.
- DISTINCT is dropped only when every kept table projects a key (``t.*`` or all primary-key
  columns, per the catalog): the kept rows are then already distinct. Otherwise it stays.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> users = Table("public", "users", (Column("id", "integer", False),), ("id",))
>>> sql = "SELECT DISTINCT u.* FROM users u JOIN events e ON e.user_id = u.id WHERE e.kind = 'view'"
>>> tree = sqlglot.parse_one(sql, read="postgres")
>>> print(distinct_join_to_exists(tree, Catalog({"public.users": users})).sql(dialect="postgres"))
SELECT u.* FROM users AS u WHERE EXISTS(SELECT 1 FROM events AS e WHERE e.user_id = u.id AND e.kind = 'view')
"""

from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, catalog_table, conjuncts

_FORBIDDEN = ("group", "having", "limit", "offset", "qualify", "windows", "laterals", "locks", "with_")


def distinct_join_to_exists(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        replacement = _rewrite(select, catalog)
        if replacement is not None:
            if select is tree:
                tree = replacement
            else:
                select.replace(replacement)
            fired = True
    return tree if fired else None


def _rewrite(select: exp.Select, catalog: Catalog) -> exp.Select | None:
    distinct = select.args.get("distinct")
    if not isinstance(distinct, exp.Distinct) or distinct.args.get("on"):
        return None
    if any(select.args.get(arg) for arg in _FORBIDDEN) or select.args.get("from_") is None:
        return None
    if any(node.parent_select is select for node in select.find_all(exp.AggFunc, exp.Window)):
        return None

    tables: dict[str, exp.Table] = {}
    conditions: list[exp.Expr] = []
    for item in [select.args["from_"].this] + [join.this for join in select.args.get("joins") or []]:
        if not isinstance(item, exp.Table) or not item.name:
            return None
        tables[item.alias_or_name.lower()] = item
    for join in select.args.get("joins") or []:
        if join.side or (join.kind and join.kind.upper() not in ("INNER", "CROSS")) or join.args.get("using"):
            return None
        conditions.extend(conjuncts(join.args.get("on")))
    if len(tables) < 2:
        return None
    where = select.args.get("where")
    conditions.extend(conjuncts(where.this if where else None))

    def qualifiers(node: exp.Expr) -> set[str] | None:
        names: set[str] = set()
        for column in node.find_all(exp.Column):
            if not column.table:
                return None
            names.add(column.table.lower())
        return names

    kept: set[str] = set()
    for node in select.expressions + ([select.args["order"]] if select.args.get("order") else []):
        if isinstance(node, exp.Star):
            return None
        names = qualifiers(node)
        if names is None:
            return None
        kept |= names
    if not kept <= set(tables) or kept == set(tables) or not kept:
        return None
    dropped = [alias for alias in tables if alias not in kept]

    stay: list[exp.Expr] = []
    move: list[exp.Expr] = []
    for condition in conditions:
        names = qualifiers(condition)
        if names is None or not names <= set(tables):
            return None  # unqualified or outer-correlated columns: cannot place them safely
        (move if names & set(dropped) else stay).append(condition.copy())

    semi = exp.select("1").from_(tables[dropped[0]].copy())
    for alias in dropped[1:]:
        semi = semi.join(tables[alias].copy(), join_type="CROSS")
    if move:
        semi = semi.where(and_all(move))

    kept_order = [alias for alias in tables if alias in kept]
    result = exp.select(*[e.copy() for e in select.expressions]).from_(tables[kept_order[0]].copy())
    for alias in kept_order[1:]:
        result = result.join(tables[alias].copy(), join_type="CROSS")
    result = result.where(and_all(stay + [exp.Exists(this=semi)]))
    if select.args.get("order"):
        result.set("order", select.args["order"].copy())
    if not all(_projects_key(select, alias, tables[alias], catalog) for alias in kept_order):
        result.set("distinct", exp.Distinct())
    return result


def _projects_key(select: exp.Select, alias: str, node: exp.Table, catalog: Catalog) -> bool:
    table = catalog_table(node, catalog)
    if table is None:
        return False
    plain: set[str] = set()
    for projection in select.expressions:
        target = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(target, exp.Column) and target.table.lower() == alias:
            if isinstance(target.this, exp.Star):
                return bool(table.keys)
            plain.add(target.name.lower())
    return any(set(key) <= plain for key in table.keys)
