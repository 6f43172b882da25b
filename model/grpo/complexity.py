"""A slow query's complexity bucket, for reporting how CADR spends its rollout budget.

LASER §5.2 motivates Complexity-Adaptive Dynamic Rollout by query complexity: complex queries
should get more rollouts. CADR itself allocates from what the pilot shows (failure, entropy,
reward variance); this module only names a bucket per prompt from the query's structure, so that
the training log can show whether the budget did go to the complex queries.

The buckets count the tables read (every table reference, in subqueries and CTEs too) and the
nested SELECTs (subqueries, CTEs, set-operation branches): "simple" reads at most two tables and
has no subquery, "complex" reads more than four tables or has more than one subquery, "medium" is
everything between.
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus import structure

BUCKETS = ("simple", "medium", "complex")


def bucket(sql: str) -> str:
    """The complexity bucket of ``sql`` ("unparsed" when sqlglot cannot read it).

    >>> bucket("SELECT * FROM t WHERE a = 1")
    'simple'
    >>> bucket("SELECT * FROM a JOIN b ON a.x = b.x WHERE a.y IN (SELECT y FROM c)")
    'medium'
    >>> bucket("SELECT 1 FROM a, b, c, d, e")
    'complex'
    >>> bucket("SELECT ((")
    'unparsed'
    """
    try:
        tree = structure.parse(sql)
    except ValueError:
        return "unparsed"
    tables = sum(1 for _ in tree.find_all(exp.Table))
    subqueries = sum(1 for _ in tree.find_all(exp.Select)) - 1  # every SELECT but the outermost
    if tables <= 2 and subqueries == 0:
        return "simple"
    if tables > 4 or subqueries > 1:
        return "complex"
    return "medium"
