"""Split an OR of join conditions into a ``UNION ALL`` with one equi-join per branch.

``SELECT … FROM orders o JOIN users u ON o.user_id = u.id OR o.user_id = u.referred_by`` cannot be
hashed or merged: PostgreSQL hash and merge joins need an equality conjunct, and an OR has none,
so the only plan is a nested loop testing the OR for every pair of rows (N×M), or, when the
inner table has an index on every column the disjuncts compare, one BitmapOr probe per outer row.
Each branch of

    SELECT … FROM orders o CROSS JOIN users u WHERE <rest> AND o.user_id = u.id
    UNION ALL
    SELECT … FROM orders o CROSS JOIN users u WHERE <rest> AND o.user_id = u.referred_by
                                                   AND (o.user_id = u.id) IS NOT TRUE

has a plain equality between the two tables, which PostgreSQL hashes (or probes by index).

Why it is equivalent: a row of the joined tables passes the original exactly when ``<rest>`` is
true and some disjunct is true. Branch i keeps the rows where disjunct i is true and every earlier
disjunct is not true (false or NULL): the branches are disjoint and together keep each passing row
exactly once, so the multiset is unchanged. UNION ALL, never UNION: UNION would also remove the
duplicates the original returns (two orders with the same amount), which is equivalent only with
a unique key in the output; the guard makes the key unnecessary. For INNER joins (and commas) an
ON condition is a filter on the joined rows like WHERE, so moving it to each branch's WHERE
changes nothing.

Conditions relied on (the rule refuses, returning None, when any fails):

- The statement is a plain ``SELECT … FROM … WHERE`` (optionally ``ORDER BY`` of output
  columns), with the same restrictions as ``or_to_union_all``: no WITH, DISTINCT, GROUP BY,
  HAVING, window, aggregate, LIMIT/OFFSET, locking, subquery or volatile function, only the
  top-level statement; every FROM item a base table the catalog knows.
- Every join is INNER, CROSS or a comma: no outer join (moving an ON condition of an outer join
  to WHERE would change its rows).
- The split condition is a top-level conjunct of WHERE or of an ON: an OR of 2 to 4 disjuncts
  (nested ORs flattened), each of which has a top-level conjunct ``a.x = b.y`` equating columns
  of two different FROM items, the join key its branch is hashed on. An OR of filters on one
  table each is ``or_to_union_all``'s case, and an OR inside one table is PostgreSQL's own
  BitmapOr.

The rule does not know whether the nested loop is slow (it is fast when an index serves both
disjuncts per outer row and the outer side is small); the verifier's timing decides.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("id", "integer", False), Column("user_id", "integer", False)), ("id",))
>>> users = Table("public", "users", (Column("id", "integer", False), Column("referred_by", "integer", True)), ("id",))
>>> catalog = Catalog({"public.orders": orders, "public.users": users})
>>> sql = "SELECT o.id, u.id FROM orders o JOIN users u ON o.user_id = u.id OR o.user_id = u.referred_by"
>>> print(join_or_to_union_all(sqlglot.parse_one(sql, read="postgres"), catalog).sql(dialect="postgres"))
SELECT o.id, u.id FROM orders AS o CROSS JOIN users AS u WHERE o.user_id = u.id UNION ALL SELECT o.id, u.id
FROM orders AS o CROSS JOIN users AS u WHERE o.user_id = u.referred_by AND NOT (o.user_id = u.id) IS TRUE
"""

from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts, resolve_column
from sidecar.rules.or_to_union_all import _disjuncts, _nullable_aliases, _plain, _union_order, _wrap

_MAX_BRANCHES = 4


def join_or_to_union_all(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    if not isinstance(expression, exp.Select) or not _plain(expression):
        return None
    select = expression
    if _nullable_aliases(select, catalog) != set():
        return None
    joins = select.args.get("joins") or []
    if not joins or any(
        join.side or (join.kind and join.kind.upper() not in ("INNER", "CROSS")) or join.args.get("using")
        for join in joins
    ):
        return None
    order = _union_order(select)
    if order is None:
        return None

    # Every conjunct of WHERE and of the ONs, with where it came from (None: WHERE).
    places: list[tuple[int | None, exp.Expr]] = []
    where = select.args.get("where")
    places.extend((None, part) for part in conjuncts(where.this if where is not None else None))
    for index, join in enumerate(joins):
        places.extend((index, part) for part in conjuncts(join.args.get("on")))

    for position, (_, condition) in enumerate(places):
        disjuncts = _disjuncts(condition)
        if not 2 <= len(disjuncts) <= _MAX_BRANCHES:
            continue
        if not all(_has_join_key(disjunct, select, catalog) for disjunct in disjuncts):
            continue
        rest = [part for i, (_, part) in enumerate(places) if i != position]
        branches: list[exp.Select] = []
        for index, disjunct in enumerate(disjuncts):
            guards = [
                exp.Not(this=exp.Is(this=exp.paren(earlier.copy(), copy=False), expression=exp.true()))
                for earlier in disjuncts[:index]
            ]
            branches.append(_branch(select, rest, [disjunct, *guards]))
        union: exp.Query = branches[0]
        for branch in branches[1:]:
            union = exp.Union(this=union, expression=branch, distinct=False)
        if order:
            union.set("order", exp.Order(expressions=order))
        return union
    return None


def _has_join_key(disjunct: exp.Expr, select: exp.Select, catalog: Catalog) -> bool:
    """Some top-level conjunct of ``disjunct`` equates bare columns of two different FROM items."""
    for part in conjuncts(disjunct):
        if isinstance(part, exp.EQ) and isinstance(part.left, exp.Column) and isinstance(part.right, exp.Column):
            left = resolve_column(part.left, select, catalog)
            right = resolve_column(part.right, select, catalog)
            if left is not None and right is not None and left[0] != right[0]:
                return True
    return False


def _branch(select: exp.Select, rest: list[exp.Expr], extra: list[exp.Expr]) -> exp.Select:
    """``select`` with every join a CROSS JOIN and all conditions in WHERE: ``rest`` and ``extra``."""
    branch = select.copy()
    branch.set("order", None)
    for join in branch.args.get("joins") or []:
        if join.args.get("on") is not None or join.kind:
            join.set("on", None)
            join.set("kind", "CROSS")
    parts = [part.copy() for part in rest] + [_wrap(part.copy()) for part in extra]
    branch.set("where", exp.Where(this=and_all(parts)))
    return branch
