"""Split an OR whose disjuncts filter different joined tables into a ``UNION ALL`` of two branches.

PostgreSQL turns ORs over one table's indexed columns into a BitmapOr, but for
``o.created_at >= '2024-12-30' OR u.email = 'x'`` over ``orders JOIN users`` neither index can
serve the whole OR, so both tables are scanned in full and joined before filtering. Each branch of

    SELECT ... WHERE <rest> AND A
    UNION ALL
    SELECT ... WHERE <rest> AND B AND NOT (A) IS TRUE      -- i.e. (A) IS NOT TRUE

can start from its own index. A row passes the original WHERE exactly when ``<rest>`` is true and
``A`` is true or ``B`` is true; the first branch keeps the rows where ``A`` is true, the second
those where ``B`` is true and ``A`` is false *or NULL*. The branches are disjoint and together
keep each passing row exactly once, so the multiset of rows is unchanged (UNION ALL, never UNION:
duplicates of the original must stay). ``IS NOT TRUE`` instead of ``NOT`` keeps rows where ``A``
is NULL and ``B`` true.

It pays only when both disjuncts are selective: every branch repeats the joins and ``<rest>``,
so when one disjunct matches a large share of its table the union is no faster (or slower) than
the single scan. The rule checks index availability, not selectivity; the verifier's timing
decides.

Conditions relied on (the rule refuses, returning None, when any fails):

- The statement itself is a plain ``SELECT ... FROM ... WHERE`` (optionally ``ORDER BY``): no
  WITH, DISTINCT (or DISTINCT ON), GROUP BY, HAVING, WINDOW, LIMIT/OFFSET/FETCH, FOR UPDATE,
  INTO, no aggregate or window function, and no subquery anywhere (not in SELECT, WHERE or ON).
  Only the top-level statement is rewritten: a SELECT inside a derived table, CTE, subquery or
  set operation never is.
- No volatile function anywhere: functions sqlglot knows to be random (``random()``,
  ``gen_random_uuid()``, sequences ...) and every function sqlglot does not know (it may be a
  user-defined function, VOLATILE by default, or e.g. ``clock_timestamp()``, ``nextval()``).
  Each branch evaluates the SELECT list and ``<rest>`` separately.
- Every FROM/JOIN item is a base table the catalog knows (no derived tables, table functions,
  LATERAL); joins are INNER/CROSS/commas, or outer joins as long as neither A's nor B's table is
  on a nullable side (the right of LEFT, the left of RIGHT, either side of FULL).
- The split OR is a top-level conjunct of WHERE (the first that qualifies). Its disjuncts
  (nested ORs flattened) each reference columns of exactly one table, and they fall into exactly
  two tables: A is the OR of the disjuncts on the table of the first disjunct, B the OR of the
  others, so an OR with three or more disjuncts still gives two branches. Every disjunct has a
  top-level conjunct comparing a bare column that leads an index of its table (catalog
  ``indexes``, primary key included) with constants: ``=``, ``<``, ``<=``, ``>``, ``>=``,
  ``BETWEEN`` or ``IN (list)``. A constant contains no column, subquery or function sqlglot does
  not know (stable functions such as ``now()`` are fine: they are constant within a statement).
- ORDER BY moves to the union only when each key is an output column: a position, an
  unqualified name equal to exactly one output column's name (PostgreSQL resolves such a name
  to the output column in the original too), or a qualified column projected bare (``o.id`` in
  ``SELECT o.id``), which becomes its position. Any other key (an expression, a column not
  projected, a name with ``*`` in the SELECT list) refuses.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("id", "integer", False), Column("user_id", "integer", False),
...     Column("created_at", "timestamp without time zone", False)), ("id",),
...     indexes=(("id",), ("created_at",)))
>>> users = Table("public", "users", (Column("id", "integer", False), Column("email", "text", False)),
...     ("id",), indexes=(("id",), ("email",)))
>>> catalog = Catalog({"public.orders": orders, "public.users": users})
>>> sql = ("SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id "
...        "WHERE o.created_at >= DATE '2024-12-30' OR u.email = 'a@b.c' ORDER BY o.id")
>>> print(or_to_union_all(sqlglot.parse_one(sql, read="postgres"), catalog).sql(dialect="postgres"))
SELECT o.id FROM orders AS o JOIN users AS u ON u.id = o.user_id WHERE o.created_at >= CAST('2024-12-30' AS DATE) UNION
ALL SELECT o.id FROM orders AS o JOIN users AS u ON u.id = o.user_id WHERE u.email = 'a@b.c' AND NOT (o.created_at >=
CAST('2024-12-30' AS DATE)) IS TRUE ORDER BY 1
>>> sql = "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE o.user_id = 1 OR u.id = 2"
>>> or_to_union_all(sqlglot.parse_one(sql, read="postgres"), catalog) is None  # orders.user_id: no index
True
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import (
    and_all,
    base_sources,
    catalog_table,
    conjuncts,
    resolve_column,
)
from sidecar.rules.declines import decline

_ALLOWED_ARGS = frozenset({"expressions", "from_", "joins", "where", "order"})
_VOLATILE = (exp.Anonymous, exp.AnonymousAggFunc, exp.Rand, exp.Randn, exp.Randstr, exp.Uniform,
             exp.Normal, exp.Uuid, exp.NextValueFor, exp.Seq1, exp.Seq2, exp.Seq4, exp.Seq8)
_RANGE_OPS = (exp.EQ, exp.LT, exp.LTE, exp.GT, exp.GTE)


def or_to_union_all(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    if not isinstance(expression, exp.Select) or not _plain(expression):
        return None
    select = expression
    nullable = _nullable_aliases(select, catalog)
    if nullable is None:
        return None
    order = _union_order(select)
    if order is None:
        return None

    where = select.args.get("where")
    parts = conjuncts(where.this if where is not None else None)
    for index, part in enumerate(parts):
        split = _split(part, select, catalog, nullable)
        if split is None:
            continue
        first, second = split
        rest = [p for i, p in enumerate(parts) if i != index]
        guard = exp.Not(this=exp.Is(this=exp.paren(first.copy(), copy=False), expression=exp.true()))
        left = _branch(select, rest, [first])
        right = _branch(select, rest, [second, guard])
        union = exp.Union(this=left, expression=right, distinct=False)
        if order:
            union.set("order", exp.Order(expressions=order))
        return union
    return None


def _plain(select: exp.Select) -> bool:
    """A plain SELECT-FROM-WHERE(-ORDER BY): nothing that a UNION ALL of two copies would change."""
    if any(value for key, value in select.args.items() if key not in _ALLOWED_ARGS):
        return False
    if select.args.get("from_") is None:
        return False
    return not any(
        True for _ in select.find_all(exp.Subquery, exp.Query, exp.AggFunc, exp.Window, *_VOLATILE)
        if _ is not select
    )


def _nullable_aliases(select: exp.Select, catalog: Catalog) -> set[str] | None:
    """Aliases on a nullable side of an outer join; None when a FROM item is not a known base table."""
    items = [select.args["from_"].this] + [join.this for join in select.args.get("joins") or []]
    if any(not isinstance(item, exp.Table) or catalog_table(item, catalog) is None for item in items):
        return None
    if len(base_sources(select)) != len(items):
        return None  # a repeated alias
    nullable: set[str] = set()
    seen: list[str] = [items[0].alias_or_name.lower()]
    for join in select.args.get("joins") or []:
        alias = join.this.alias_or_name.lower()
        side = (join.side or "").upper()
        if join.kind and join.kind.upper() not in ("INNER", "CROSS", "OUTER"):
            return None
        if side in ("LEFT", "FULL"):
            nullable.add(alias)
        if side in ("RIGHT", "FULL"):
            nullable.update(seen)
        seen.append(alias)
    return nullable


def _union_order(select: exp.Select) -> list[exp.Ordered] | None:
    """The ORDER BY keys rewritten for the union ([] when there is none), or None when one does not
    refer to an output column."""
    order = select.args.get("order")
    if order is None:
        return []
    projections = select.expressions
    has_star = any(p.is_star for p in projections)
    keys: list[exp.Ordered] = []
    for ordered in order.expressions:
        key = ordered.this
        if isinstance(key, exp.Literal) and not key.is_string and key.name.isdigit():
            position = int(key.name)
            if not has_star and not 1 <= position <= len(projections):
                return None
            keys.append(ordered.copy())
            continue
        if not isinstance(key, exp.Column) or has_star or not key.name:
            return None
        if not key.table:
            names = [p.alias_or_name.lower() for p in projections if isinstance(p, (exp.Alias, exp.Column))]
            if names.count(key.name.lower()) != 1:
                return None
            keys.append(ordered.copy())
            continue
        projected = _projected_position(key, projections)
        if projected is None:
            return None
        replacement = ordered.copy()
        replacement.set("this", exp.Literal.number(projected))
        keys.append(replacement)
    return keys


def _projected_position(column: exp.Column, projections: list[exp.Expr]) -> int | None:
    for position, projection in enumerate(projections, start=1):
        bare = projection.this if isinstance(projection, exp.Alias) else projection
        if (isinstance(bare, exp.Column) and not bare.args.get("db")
                and bare.table.lower() == column.table.lower() and bare.name.lower() == column.name.lower()):
            return position
    return None


def _split(condition: exp.Expr, select: exp.Select, catalog: Catalog,
           nullable: set[str]) -> tuple[exp.Expr, exp.Expr] | None:
    """(A, B) for an OR conjunct whose disjuncts are index-served filters on exactly two tables."""
    disjuncts = _disjuncts(condition)
    if len(disjuncts) < 2:
        return None
    groups: dict[str, list[exp.Expr]] = {}
    for disjunct in disjuncts:
        alias = _single_table(disjunct, select, catalog)
        if alias is None or alias in nullable:
            return None
        if not _index_served(disjunct, alias, select, catalog):
            decline(f"OR across tables: {disjunct.sql(dialect='postgres')} compares no leading index column "
                    "of its table with constants, so a UNION ALL branch for it would scan the table anyway")
            return None
        groups.setdefault(alias, []).append(disjunct)
    if len(groups) != 2:
        return None
    first, second = (_or_all(group) for group in groups.values())
    return first, second


def _disjuncts(condition: exp.Expr) -> list[exp.Expr]:
    condition = condition.unnest()
    if isinstance(condition, exp.Or):
        return _disjuncts(condition.left) + _disjuncts(condition.right)
    return [condition]


def _or_all(parts: list[exp.Expr]) -> exp.Expr:
    copies = [part.copy() for part in parts]
    return exp.or_(*copies, copy=False) if len(copies) > 1 else copies[0]


def _single_table(condition: exp.Expr, select: exp.Select, catalog: Catalog) -> str | None:
    aliases: set[str] = set()
    for column in condition.find_all(exp.Column):
        resolved = resolve_column(column, select, catalog)
        if resolved is None:
            return None
        aliases.add(resolved[0])
    return aliases.pop() if len(aliases) == 1 else None


def _index_served(condition: exp.Expr, alias: str, select: exp.Select, catalog: Catalog) -> bool:
    """Some top-level conjunct compares a bare leading index column of ``alias`` with constants."""
    for part in conjuncts(condition):
        column: exp.Expr | None = None
        if isinstance(part, _RANGE_OPS):
            if isinstance(part.left, exp.Column) and _constant(part.right):
                column = part.left
            elif isinstance(part.right, exp.Column) and _constant(part.left):
                column = part.right
        elif isinstance(part, exp.Between):
            if _constant(part.args.get("low")) and _constant(part.args.get("high")):
                column = part.this
        elif isinstance(part, exp.In):
            values = part.expressions
            if values and not part.args.get("query") and not part.args.get("unnest") and all(
                    _constant(value) for value in values):
                column = part.this
        if isinstance(column, exp.Column) and _leads_index(column, alias, select, catalog):
            return True
    return False


def _leads_index(column: exp.Column, alias: str, select: exp.Select, catalog: Catalog) -> bool:
    resolved = resolve_column(column, select, catalog)
    if resolved is None or resolved[0] != alias:
        return False
    _, table, col = resolved
    return any(index and index[0] == col.name for index in table.indexes)


def _constant(node: exp.Expr | None) -> bool:
    if node is None:
        return False
    return not any(True for _ in node.find_all(exp.Column, exp.Query, exp.Subquery, exp.AggFunc,
                                                exp.Window, *_VOLATILE))


def _branch(select: exp.Select, rest: Sequence[exp.Expr], extra: Sequence[exp.Expr]) -> exp.Select:
    branch = select.copy()
    branch.set("order", None)
    parts = [part.copy() for part in rest] + [_wrap(part) for part in extra]
    condition = and_all(parts)
    branch.set("where", exp.Where(this=condition) if condition is not None else None)
    return branch


def _wrap(part: exp.Expr) -> exp.Expr:
    return exp.paren(part, copy=False) if isinstance(part, exp.Or) else part
