"""Preconditions shared by the slowdown transformations."""
from __future__ import annotations

from sqlglot import exp

_CLAUSES_THAT_CHANGE_ROWS = ("group", "having", "limit", "offset", "fetch", "locks", "qualify", "windows", "with_",
                             "into", "distinct_on")


def simple_select(node: exp.Expr) -> bool:
    """A plain SELECT ... FROM ... [WHERE] [ORDER BY] [DISTINCT]: no grouping, aggregates, windows,
    row limits, locking, WITH or set operation. Its rows are "the FROM rows passing WHERE".

    >>> import sqlglot
    >>> simple_select(sqlglot.parse_one("SELECT a FROM t WHERE b > 1 ORDER BY a", read="postgres"))
    True
    >>> simple_select(sqlglot.parse_one("SELECT max(a) FROM t", read="postgres"))
    False
    >>> simple_select(sqlglot.parse_one("SELECT a FROM t LIMIT 3", read="postgres"))
    False
    """
    if not isinstance(node, exp.Select) or node.args.get("from_") is None:
        return False
    if any(node.args.get(clause) for clause in _CLAUSES_THAT_CHANGE_ROWS):
        return False
    distinct = node.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        return False
    return not any(_aggregate_or_window(projection, node) for projection in node.expressions)


def _aggregate_or_window(node: exp.Expr, select: exp.Select) -> bool:
    return any(not _inside_subquery(found, select) for found in node.find_all(exp.AggFunc, exp.Window))


def _inside_subquery(node: exp.Expr, top: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None and parent is not top:
        if isinstance(parent, exp.Query):
            return True
        parent = parent.parent
    return False


def deterministic(node: exp.Expr) -> bool:
    """No function that may return a different value when evaluated again: sqlglot's random
    functions and every function sqlglot does not know (it may be VOLATILE, like a user function
    or clock_timestamp()).

    >>> import sqlglot
    >>> deterministic(sqlglot.parse_one("SELECT upper(a), count(*) FROM t GROUP BY 1", read="postgres"))
    True
    >>> deterministic(sqlglot.parse_one("SELECT a FROM t WHERE random() < 0.5", read="postgres"))
    False
    >>> deterministic(sqlglot.parse_one("SELECT my_udf(a) FROM t", read="postgres"))
    False
    """
    return not any(isinstance(f, (exp.Anonymous, exp.Rand, exp.Uuid)) for f in node.find_all(exp.Func))


def outer_references(subquery: exp.Select) -> list[exp.Column]:
    """Qualified columns of ``subquery`` whose qualifier names none of its own FROM items (at any
    depth): references to an enclosing query."""
    inner = {t.alias_or_name.lower() for t in subquery.find_all(exp.Table)}
    inner |= {s.alias_or_name.lower() for s in subquery.find_all(exp.Subquery) if s.alias_or_name}
    return [c for c in subquery.find_all(exp.Column) if c.table and c.table.lower() not in inner]
