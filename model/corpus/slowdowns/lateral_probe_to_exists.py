"""``FROM …, LATERAL (SELECT 1 FROM t WHERE p LIMIT 1) AS probe`` → ``WHERE EXISTS (SELECT 1 FROM t WHERE p)``.
The inverse of the rules backend's ``exists_to_lateral_probe``.

Why it is slower (where the rule found the probe faster): the LATERAL with LIMIT 1 cannot be
pulled up, so PostgreSQL probes ``t``'s index once per outer row and stops at the first match;
the EXISTS becomes a semi-join, which the planner may run as a hash over all of ``t`` when it
misjudges how many outer rows there are (TPC-H Q4's ``l_commitdate < l_receiptdate``).

Why it is equivalent: the probe returns one row when some row of ``t`` passes ``p`` and none
otherwise, and none of its columns is used: the cross join with it keeps each outer row exactly
once when a match exists and drops it when not, which is the EXISTS filter. Preconditions: a
LATERAL derived table joined by a comma, CROSS JOIN or ``JOIN … ON TRUE``, whose body is ``SELECT
<constant> FROM … [WHERE …] LIMIT 1`` and nothing else (no ORDER BY, OFFSET, GROUP BY, aggregate,
DISTINCT, WITH), whose alias is referenced nowhere.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT u.id FROM users AS u, LATERAL (SELECT 1 FROM orders AS o WHERE o.user_id = u.id LIMIT 1) AS exists_probe WHERE u.id < 300"
>>> print(lateral_probe_to_exists(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT u.id FROM users AS u WHERE u.id < 300 AND EXISTS(SELECT 1 FROM orders AS o WHERE o.user_id = u.id)
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import simple_select
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts


def lateral_probe_to_exists(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        for join in list(select.args.get("joins") or []):
            body = _probe(join, select)
            if body is None:
                continue
            select.set("joins", [j for j in select.args["joins"] if j is not join] or None)
            where = select.args.get("where")
            select.set("where", exp.Where(this=and_all([*(p.copy() for p in conjuncts(where.this if where else None)),
                                                        exp.Exists(this=body)])))
            fired = True
    return tree if fired else None


def _probe(join: exp.Join, select: exp.Select) -> exp.Select | None:
    lateral = join.this
    if not isinstance(lateral, exp.Lateral) or join.side or (join.kind or "").upper() not in ("", "CROSS", "INNER"):
        return None
    on = join.args.get("on")
    if on is not None and not (isinstance(on, exp.Boolean) and on.this is True):
        return None
    subquery = lateral.this
    if not isinstance(subquery, exp.Subquery) or not isinstance(subquery.this, exp.Select):
        return None
    name = lateral.alias_or_name.lower()
    limited = subquery.this
    limit = limited.args.get("limit")
    if limit is None or limit.expression != exp.Literal.number(1):
        return None
    body = limited.copy()
    body.set("limit", None)
    if not simple_select(body) or body.args.get("order") or body.args.get("distinct"):
        return None
    if len(body.expressions) != 1 or not isinstance(body.expressions[0], exp.Literal):
        return None
    if name and any(c.table.lower() == name for c in select.find_all(exp.Column)):
        return None
    return body
