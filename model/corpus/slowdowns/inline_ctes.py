"""A CTE referenced two or more times → a copy of its body inlined at each reference.

Why it is slower: PostgreSQL materializes a CTE referenced more than once and computes it once;
inlined, each reference recomputes it (scans and joins repeated). Undone by
``extract_common_subexpressions`` in the rules backend (repeated subqueries → one CTE).

Why it is equivalent: each reference gets the body's rows, as long as the body gives the same
rows every time it is evaluated: it must be a SELECT (or set operation) with no volatile
functions and no LIMIT/OFFSET/FETCH (which may pick different tied rows on each evaluation). A
recursive WITH, a CTE marked MATERIALIZED, a body whose columns are named by a column list
(``c(a, b) AS …``), and a name redefined by an inner WITH are left alone. Each reference keeps
its alias (or the CTE's name), so the columns it exposes are unchanged. One step inlines every
qualifying CTE and drops its definition (an emptied WITH is removed).

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("WITH t AS (SELECT user_id, sum(amount) AS s FROM orders GROUP BY user_id) "
...        "SELECT a.user_id FROM t AS a WHERE a.s > (SELECT avg(s) FROM t)")
>>> print(inline_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT a.user_id FROM (SELECT user_id, SUM(amount) AS s FROM orders GROUP BY user_id) AS a WHERE a.s > (SELECT AVG(s) FROM (SELECT user_id, SUM(amount) AS s FROM orders GROUP BY user_id) AS t)
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from model.corpus.slowdowns.materialize_ctes import references
from sidecar.catalog import Catalog


def inline_ctes(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for with_ in list(tree.find_all(exp.With)):
        scope = with_.parent
        if with_.args.get("recursive") or scope is None:
            continue
        kept = []
        for cte in with_.expressions:
            name = cte.alias_or_name.lower()
            if _inlinable(cte, name, scope):
                for reference in references(scope, name):
                    given = reference.args.get("alias")
                    alias = given.copy() if given is not None else exp.TableAlias(
                        this=exp.to_identifier(reference.name))
                    reference.replace(exp.Subquery(this=cte.this.copy(), alias=alias))
                fired = True
            else:
                kept.append(cte)
        if len(kept) != len(with_.expressions):
            if kept:
                with_.set("expressions", kept)
            else:
                with_.pop()
    return tree if fired else None


def _inlinable(cte: exp.CTE, name: str, scope: exp.Expr) -> bool:
    body = cte.this
    if not isinstance(body, exp.Query) or cte.args.get("materialized") is not None:
        return False
    alias = cte.args.get("alias")
    if alias is not None and alias.columns:
        return False
    if not deterministic(body) or any(body.find(kind) for kind in (exp.Limit, exp.Offset, exp.Fetch)):
        return False
    if references(body, name):
        return False
    if any(other is not cte and other.alias_or_name.lower() == name for other in scope.find_all(exp.CTE)):
        return False
    return len(references(scope, name)) >= 2
