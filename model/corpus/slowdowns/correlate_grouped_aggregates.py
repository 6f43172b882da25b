"""``LEFT JOIN (SELECT k AS key, AGG(v) AS val FROM t WHERE w GROUP BY k) AS s ON s.key = x`` → one
correlated scalar subquery ``(SELECT AGG(v) FROM t WHERE w AND k = x)`` per use of ``s.val``.
The inverse of the rules backend's ``decorrelate_scalar_aggregates`` (whose output has exactly
this shape), and LASER's "decorrelated aggregate → per-row correlated aggregate".

Why it is slower: the derived table aggregates ``t`` once (one hash aggregate, one hash join);
each correlated subquery is a SubPlan that runs the aggregate again for every outer row (an
index probe per row at best, a scan per row at worst), once per use.

Why it is equivalent: for an outer row whose ``x`` has a group, ``s.val`` is that group's
aggregate, which is what the subquery computes over the same rows (``w AND k = x``); for one
without (``x`` NULL or unmatched), the LEFT JOIN gives NULL, and so does an aggregate over no
rows — except COUNT, which gives 0: a COUNT column is only rewritten where every use is
``COALESCE(s.val, 0)`` (the form ``decorrelate_scalar_aggregates`` writes), which is 0 then too.
FILTER clauses move into the subquery with their aggregate. Preconditions: the derived table is a
SELECT with one GROUP BY expression ``k`` selected once as a plain column, every other item an
aliased aggregate, no HAVING, DISTINCT, window, LIMIT, ORDER BY or WITH; ON is exactly
``s.key = x`` with ``x`` qualified by an outer name the derived table does not use; ``s.key`` is
used nowhere else; nothing in the SELECT is ``*``.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("SELECT u.id, COALESCE(a.n, 0) AS n, a.top AS top FROM users AS u LEFT JOIN (SELECT o.user_id AS key_1, "
...        "COUNT(*) AS n, MAX(o.amount) AS top FROM orders AS o GROUP BY o.user_id) AS a ON a.key_1 = u.id WHERE u.country = 'GB'")
>>> print(correlate_grouped_aggregates(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT u.id, (SELECT COUNT(*) FROM orders AS o WHERE o.user_id = u.id) AS n, (SELECT MAX(o.amount) FROM orders AS o WHERE o.user_id = u.id) AS top FROM users AS u WHERE u.country = 'GB'
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts, source_names


def correlate_grouped_aggregates(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        for join in list(select.args.get("joins") or []):
            if _rewrite(select, join):
                fired = True
                break
    return tree if fired else None


def _rewrite(select: exp.Select, join: exp.Join) -> bool:
    derived = join.this
    if (join.side or "").upper() != "LEFT" or join.args.get("using") or not isinstance(derived, exp.Subquery):
        return False
    body = derived.this
    name = derived.alias_or_name.lower()
    if not name or not isinstance(body, exp.Select) or not _grouped(body):
        return False
    key_alias, key_expr = _key(body)
    if key_alias is None or key_expr is None:
        return False
    match = _correlation(join.args.get("on"), name, key_alias, body)
    if match is None:
        return False
    aggregates = {item.alias.lower(): item.this for item in body.expressions
                  if isinstance(item, exp.Alias) and item.alias.lower() != key_alias}
    uses = [c for c in select.find_all(exp.Column) if c.table.lower() == name and not _within(c, join)]
    if any(isinstance(p, exp.Star) or (isinstance(p, exp.Column) and isinstance(p.this, exp.Star))
           for p in select.expressions):
        return False
    replacements: list[tuple[exp.Expr, exp.Expr]] = []
    for use in uses:
        aggregate = aggregates.get(use.name.lower())
        if aggregate is None:
            return False  # the key, or an unknown column
        if isinstance(_unfiltered(aggregate), exp.Count):
            wrapper = use.parent
            if not (isinstance(wrapper, exp.Coalesce) and wrapper.this is use and len(wrapper.expressions) == 1
                    and wrapper.expressions[0] == exp.Literal.number(0)):
                return False
            replacements.append((wrapper, _lookup(body, aggregate, key_expr, match)))
        else:
            replacements.append((use, _lookup(body, aggregate, key_expr, match)))
    if not replacements:
        return False
    for old, new in replacements:
        if old.parent is select:  # a bare projection: keep the name the result column had
            new = exp.Alias(this=new, alias=exp.to_identifier(old.output_name or "coalesce"))
        old.replace(new)
    select.set("joins", [j for j in select.args["joins"] if j is not join] or None)
    return True


def _grouped(body: exp.Select) -> bool:
    group = body.args.get("group")
    if group is None or len(group.expressions) != 1 or body.args.get("from_") is None:
        return False
    if any(body.args.get(k) for k in ("having", "distinct", "limit", "offset", "order", "with_", "windows", "locks")):
        return False
    return deterministic(body) and not any(w.parent_select is body for w in body.find_all(exp.Window))


def _key(body: exp.Select) -> tuple[str | None, exp.Expr | None]:
    [grouped] = body.args["group"].expressions
    keys = [item for item in body.expressions if (item.this if isinstance(item, exp.Alias) else item) == grouped]
    others = [item for item in body.expressions if item not in keys]
    if len(keys) != 1 or not isinstance(grouped, exp.Column):
        return None, None
    if not all(isinstance(item, exp.Alias) and isinstance(_unfiltered(item.this), exp.AggFunc) for item in others):
        return None, None
    return keys[0].alias_or_name.lower(), grouped


def _unfiltered(aggregate: exp.Expr) -> exp.Expr:
    return aggregate.this if isinstance(aggregate, exp.Filter) else aggregate


def _correlation(on: exp.Expr | None, name: str, key_alias: str, body: exp.Select) -> exp.Expr | None:
    parts = conjuncts(on)
    if len(parts) != 1 or not isinstance(parts[0], exp.EQ):
        return None
    inner = source_names(body) | {t.alias_or_name.lower() for t in body.find_all(exp.Table)}
    eq = parts[0]
    sides: tuple[tuple[exp.Expr, exp.Expr], ...] = ((eq.this, eq.expression), (eq.expression, eq.this))
    for mine, other in sides:
        if isinstance(mine, exp.Column) and mine.table.lower() == name and mine.name.lower() == key_alias:
            columns = list(other.find_all(exp.Column))
            if other.find(exp.Query) or not columns or any(
                    not c.table or c.table.lower() in inner or c.table.lower() == name for c in columns):
                return None
            return other
    return None


def _within(node: exp.Expr, ancestor: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _lookup(body: exp.Select, aggregate: exp.Expr, key: exp.Expr, outer: exp.Expr) -> exp.Subquery:
    inner = body.copy()
    inner.set("expressions", [aggregate.copy()])
    inner.set("group", None)
    where = inner.args.get("where")
    inner.set("where", exp.Where(this=and_all([*(p.copy() for p in conjuncts(where.this if where else None)),
                                               exp.EQ(this=key.copy(), expression=outer.copy())])))
    return exp.Subquery(this=inner)
