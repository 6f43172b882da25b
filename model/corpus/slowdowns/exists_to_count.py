"""``EXISTS (SELECT … FROM … WHERE p)`` → ``(SELECT COUNT(*) FROM … WHERE p) > 0`` (and ``NOT EXISTS`` → ``= 0``).

Why it is slower: PostgreSQL plans EXISTS as a semi-join (it stops at the first match, and can
hash or merge the inner side); a scalar COUNT subquery cannot be pulled up, so it runs as a
correlated SubPlan once per outer row and counts every match. Undone by rewriting the count back
into EXISTS (no rules-backend rule does; a model has to learn it).

Why it is equivalent: the subquery's rows are "FROM rows passing WHERE"; EXISTS is true exactly
when there is at least one, which is exactly when their count is above zero. Both sides are
two-valued (COUNT is never NULL), so the replacement holds in any context (under NOT, OR, in a
SELECT list). The subquery must be a simple SELECT (no GROUP BY, HAVING, aggregates, windows,
LIMIT/OFFSET, locking, WITH, set operation) so that its row count is the number of matches: an
aggregate without GROUP BY returns one row even when nothing matches. Its select list, DISTINCT
and ORDER BY do not change whether a row exists and are dropped.

Every EXISTS that qualifies is rewritten in one step.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "SELECT u.id FROM users AS u WHERE NOT EXISTS(SELECT 1 FROM orders AS o WHERE o.user_id = u.id)"
>>> print(exists_to_count(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT u.id FROM users AS u WHERE (SELECT COUNT(*) FROM orders AS o WHERE o.user_id = u.id) = 0
>>> grouped = "SELECT 1 FROM users AS u WHERE EXISTS(SELECT max(o.id) FROM orders AS o WHERE o.user_id = u.id)"
>>> exists_to_count(sqlglot.parse_one(grouped, read="postgres"), Catalog()) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import simple_select
from sidecar.catalog import Catalog


def count_of(select: exp.Select) -> exp.Subquery:
    """``(SELECT COUNT(*) FROM … WHERE …)`` over the same FROM and WHERE as ``select``."""
    counted = select.copy()
    counted.set("expressions", [exp.Count(this=exp.Star())])
    counted.set("distinct", None)
    counted.set("order", None)
    return exp.Subquery(this=counted)


def exists_to_count(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for node in list(tree.find_all(exp.Exists)):
        select = node.this
        if not simple_select(select):
            continue
        parent = node.parent
        negated = isinstance(parent, exp.Not)
        if negated and parent is not None:
            parent.replace(exp.EQ(this=count_of(select), expression=exp.Literal.number(0)))
        else:
            node.replace(exp.GT(this=count_of(select), expression=exp.Literal.number(0)))
        fired = True
    return tree if fired else None
