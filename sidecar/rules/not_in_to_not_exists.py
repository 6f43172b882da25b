"""Turn ``x NOT IN (SELECT y FROM ...)`` into ``NOT EXISTS (SELECT 1 FROM ... WHERE ... AND y = x)``.

PostgreSQL cannot plan ``NOT IN (subquery)`` as an anti-join, because of its NULL semantics (one
NULL ``y`` makes the predicate NULL for every ``x``; a NULL ``x`` is NULL against a non-empty set).
It runs a hashed SubPlan, or a per-row rescan when the set does not fit ``work_mem``. ``NOT
EXISTS`` becomes an anti-join. The two are equal exactly when neither side can be NULL: the
predicate is then two-valued, TRUE iff no ``y`` equals ``x``, in any boolean context.

Constraints relied on (each checked; any failure leaves that predicate unchanged, and the rule
returns None when no predicate was rewritten):

- The predicate is ``x NOT IN (<subquery>)`` (also written ``NOT x IN (...)`` or
  ``NOT (x IN (...))``) anywhere inside the WHERE clause of a SELECT, at any nesting depth of the
  statement (inside AND/OR/NOT, inside other subqueries, CTEs or set-operation branches). NOT IN
  in SELECT lists, JOIN ... ON, HAVING, or over a value list is left alone; so are row-valued
  ``(a, b) NOT IN (...)`` and ``<> ALL (...)``.
- ``x`` is a plain column (qualified or unambiguously unqualified) of a base table in the FROM of
  that SELECT, the table is in the catalog (not a CTE of the same name) and the column is declared
  NOT NULL, and that table is not on the nullable side of an outer join of that SELECT (the right
  side of LEFT, the left side of RIGHT, either side of FULL).
- The subquery is one plain SELECT: no set operation, WITH, GROUP BY, HAVING, aggregates or window
  functions of its own, no LIMIT/OFFSET/FETCH, no DISTINCT ON, no locking clause, nothing
  non-PostgreSQL. A plain DISTINCT and an ORDER BY without function calls are dropped (they do not
  change the set of values).
- Its single select item is a plain column ``y`` of a base table in the subquery's own FROM, in the
  catalog (not a CTE) and declared NOT NULL, and not on the nullable side of an outer join of the
  subquery. Other tables of the subquery's FROM may be anything.

Scoping: ``x`` is written qualified by its table's alias (or name) in the correlated predicate.
When that name is also a FROM item of the subquery (the subquery reuses the alias), the inner item
is given a fresh alias (``<name>_1``, ...) and the subquery's references to it are requalified; this
renaming is only done when every FROM item of the subquery is a base table.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> users = Table("public", "users", (Column("id", "integer", False),), ("id",))
>>> orders = Table("public", "orders", (Column("id", "integer", False), Column("user_id", "integer", False)), ("id",))
>>> catalog = Catalog({"public.users": users, "public.orders": orders})
>>> sql = "SELECT u.id FROM users AS u WHERE u.id NOT IN (SELECT u.user_id FROM orders AS u)"
>>> print(not_in_to_not_exists(sqlglot.parse_one(sql, read="postgres"), catalog).sql(dialect="postgres"))
SELECT u.id FROM users AS u WHERE NOT EXISTS(SELECT 1 FROM orders AS u_1 WHERE u_1.user_id = u.id)
>>> constants = sqlglot.parse_one("SELECT id FROM users WHERE id NOT IN (1, 2)", read="postgres")
>>> not_in_to_not_exists(constants, catalog) is None
True
"""

from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts, not_null_source, source_names
from sidecar.rules.declines import decline

_SUBQUERY_ALLOWED = frozenset({"expressions", "from_", "joins", "where", "distinct", "order"})


def not_in_to_not_exists(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    fired = False
    # Innermost first: rewriting one predicate moves (never copies) the nodes of deeper ones.
    for node in reversed(list(tree.find_all(exp.Not, bfs=False))):
        fired = _rewrite(node, tree, catalog, cte_names) or fired
    return tree if fired else None


def _rewrite(node: exp.Not, tree: exp.Expr, catalog: Catalog, cte_names: set[str]) -> bool:
    predicate = node.this.unnest()
    if not isinstance(predicate, exp.In) or predicate.args.get("expressions"):
        return False
    if predicate.args.get("unnest") or predicate.args.get("field") or predicate.args.get("is_global"):
        return False
    wrapper = predicate.args.get("query")
    if not isinstance(wrapper, exp.Subquery) or any(v for k, v in wrapper.args.items() if k != "this"):
        return False
    sub = wrapper.this
    outer = node.parent_select
    if not isinstance(sub, exp.Select) or not isinstance(outer, exp.Select) or not _in_where(node, outer):
        return False

    # Outer operand: a NOT NULL column of a known table on a non-nullable side of the outer SELECT.
    x = predicate.this
    if not isinstance(x, exp.Column) or isinstance(x.this, exp.Star) or x.args.get("db"):
        return False
    outer_source = not_null_source(x, outer, catalog, cte_names)
    if outer_source is None:
        decline(f"{x.sql(dialect='postgres')} NOT IN (subquery): {x.sql(dialect='postgres')} is not known to be "
                "NOT NULL (a nullable or unknown column, or an outer join's nullable side), and on a NULL "
                "NOT IN and NOT EXISTS differ")
        return False

    # Subquery: one plain SELECT whose only item is a NOT NULL column of its own FROM.
    if any(value for key, value in sub.args.items() if key not in _SUBQUERY_ALLOWED):
        return False
    if sub.args.get("from_") is None or len(sub.expressions) != 1:
        return False
    distinct = sub.args.get("distinct")
    if distinct is not None and (not isinstance(distinct, exp.Distinct) or distinct.args.get("on")):
        return False
    order = sub.args.get("order")
    if order is not None and order.find(exp.Func):
        return False
    if any(n.parent_select is sub for n in sub.find_all(exp.AggFunc, exp.Window)):
        return False
    item = sub.expressions[0]
    y = item.this if isinstance(item, exp.Alias) else item
    if not isinstance(y, exp.Column) or isinstance(y.this, exp.Star) or y.args.get("db"):
        return False
    if not_null_source(y, sub, catalog, cte_names) is None:
        decline(f"NOT IN (SELECT {y.sql(dialect='postgres')} …): the subquery's column is not known to be NOT "
                "NULL, and one NULL there makes NOT IN false for every row where NOT EXISTS is true")
        return False

    # Qualify x by its outer source; give a clashing inner FROM item a fresh alias first.
    outer_name = outer_source.args["alias"].this if outer_source.args.get("alias") else outer_source.this
    if not isinstance(outer_name, exp.Identifier):
        return False
    if outer_name.name.lower() in source_names(sub) and not _rename_inner(sub, outer_name, tree):
        return False
    outer_ref = exp.Column(this=x.this.copy(), table=outer_name.copy())
    item = sub.expressions[0]
    y = item.this if isinstance(item, exp.Alias) else item

    sub.set("expressions", [exp.Literal.number(1)])
    sub.set("distinct", None)
    sub.set("order", None)
    where = sub.args.get("where")
    parts = conjuncts(where.this if where is not None else None)
    sub.set("where", exp.Where(this=and_all(parts + [exp.EQ(this=y.copy(), expression=outer_ref)])))
    node.set("this", exp.Exists(this=sub))
    return True


def _in_where(node: exp.Expr, select: exp.Select) -> bool:
    current: exp.Expr = node
    while isinstance(current.parent, exp.Expr) and current.parent is not select:
        current = current.parent
    return current.parent is select and current.arg_key == "where"


def _rename_inner(sub: exp.Select, name: exp.Identifier, tree: exp.Expr) -> bool:
    """Give ``sub``'s FROM item called ``name`` a fresh alias and requalify the references to it."""
    items = [sub.args["from_"].this] + [join.this for join in sub.args.get("joins") or []]
    if not all(isinstance(item, exp.Table) and item.name for item in items):
        return False
    old = name.name.lower()
    target = next(item for item in items if item.alias_or_name.lower() == old)

    used = {ident.name.lower() for ident in tree.find_all(exp.Identifier)}
    n = 1
    while f"{old}_{n}" in used:
        n += 1
    fresh = exp.Identifier(this=f"{name.name}_{n}", quoted=name.quoted)

    references: list[exp.Column] = []
    for column in sub.find_all(exp.Column):
        if column.table.lower() != old:
            continue
        if column.args.get("db"):
            return False
        scope = column.parent_select
        shadowed = False
        while scope is not None and scope is not sub:
            if old in source_names(scope):
                shadowed = True
                break
            scope = scope.parent_select
        if not shadowed:
            references.append(column)
    if isinstance(target.args.get("alias"), exp.TableAlias):
        target.args["alias"].set("this", fresh)
    else:
        target.set("alias", exp.TableAlias(this=fresh))
    for column in references:
        column.set("table", fresh.copy())
    return True
