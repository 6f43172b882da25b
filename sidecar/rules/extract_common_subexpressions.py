"""Compute a derived table that occurs several times once, as a CTE referenced at each place.

PostgreSQL does no common-subexpression elimination across subqueries; since PostgreSQL 12 a CTE
referenced more than once is materialized and computed once (LASER §6.8 case study).

Constraints relied on:

- CTE extraction only when the subtrees are structurally identical: derived tables (subqueries in
  FROM/JOIN) whose bodies render to the same SQL, occurring at least twice.
- The body is self-contained: every qualified column refers to a table or alias defined inside
  it (no correlation with the enclosing query), and it calls no volatile function.
- No occurrence lies inside an existing CTE (the new CTE is appended after the existing ones).
- The largest repeated body wins; bodies nested inside an extracted one are not extracted again.
- Each occurrence keeps its alias (and column aliases): ``(body) AS t`` becomes ``cse_1 AS t``.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("SELECT a.k FROM (SELECT k, sum(v) AS s FROM t GROUP BY k) AS a "
...        "WHERE a.s > (SELECT avg(b.s) FROM (SELECT k, sum(v) AS s FROM t GROUP BY k) AS b)")
>>> print(extract_common_subexpressions(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
WITH cse_1 AS (SELECT k, SUM(v) AS s FROM t GROUP BY k) SELECT a.k FROM cse_1 AS a WHERE a.s > (SELECT AVG(b.s) FROM
cse_1 AS b)
"""

from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import fresh_name, inside

_VOLATILE = frozenset({"random", "nextval", "setval", "clock_timestamp", "timeofday", "gen_random_uuid",
                       "uuid_generate_v4", "txid_current", "pg_sleep"})


def extract_common_subexpressions(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        return None
    existing_ctes = [cte.this for cte in tree.find_all(exp.CTE)]
    taken = {table.name.lower() for table in tree.find_all(exp.Table)}
    taken |= {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}

    occurrences: dict[str, list[exp.Subquery]] = {}
    for subquery in tree.find_all(exp.Subquery):
        if not isinstance(subquery.parent, (exp.From, exp.Join)):
            continue
        body = subquery.this
        if not isinstance(body, (exp.Select, exp.SetOperation)) or not _self_contained(body):
            continue
        if any(inside(subquery, cte) for cte in existing_ctes):
            continue
        occurrences.setdefault(body.sql(dialect="postgres"), []).append(subquery)

    repeated = sorted(
        ((sql, nodes) for sql, nodes in occurrences.items() if len(nodes) >= 2),
        key=lambda item: len(item[0]),
        reverse=True,
    )
    extracted: list[exp.Subquery] = []
    ctes: list[exp.CTE] = []
    for _, nodes in repeated:
        nodes = [n for n in nodes if not any(inside(n, outer) for outer in extracted)]
        if len(nodes) < 2:
            continue
        name = fresh_name("cse", taken)
        ctes.append(exp.CTE(this=nodes[0].this.copy(), alias=exp.TableAlias(this=exp.to_identifier(name))))
        for node in nodes:
            extracted.append(node)
            reference = exp.Table(this=exp.to_identifier(name))
            if node.args.get("alias") is not None:
                reference.set("alias", node.args["alias"].copy())
            node.replace(reference)
    if not ctes:
        return None
    with_ = tree.args.get("with_")
    if with_ is None:
        tree.set("with_", exp.With(expressions=ctes))
    else:
        with_.set("expressions", list(with_.expressions) + ctes)
    return tree


def _self_contained(body: exp.Expr) -> bool:
    defined = {node.alias_or_name.lower() for node in body.find_all(exp.Table, exp.Subquery)
               if node.alias_or_name}
    defined |= {cte.alias_or_name.lower() for cte in body.find_all(exp.CTE)}
    for column in body.find_all(exp.Column):
        if column.table and column.table.lower() not in defined:
            return False
    for function in body.find_all(exp.Func):
        name = function.name if isinstance(function, exp.Anonymous) else function.sql_name()
        if isinstance(function, exp.Rand) or name.lower() in _VOLATILE:
            return False
    return True
