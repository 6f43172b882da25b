"""A filter inside a CTE's body → the same filter on every reference instead
(``WITH c AS (SELECT a, b FROM t WHERE a > 5) … FROM c AS x`` → ``WITH c AS (SELECT a, b FROM t) …
FROM c AS x WHERE x.a > 5``). The inverse of the rules backend's ``push_predicates_into_ctes``,
and LASER's "predicate pulled out of a subquery to the outer level".

Why it is slower: a CTE referenced more than once (or marked MATERIALIZED) is computed in full
before any reference reads it; without the filter in its body it materializes every row of ``t``
(all the work of its joins and expressions) only for each reader to throw most of them away.

Why it is equivalent: the body is a plain SELECT (no grouping, aggregates, windows, LIMIT,
DISTINCT ON), so its rows are "the FROM rows passing WHERE", projected; a conjunct P of that WHERE
that reads only columns the body outputs as plain columns filters the same rows whether applied
before or after the projection. Applying it at every reference (each a plain FROM item, not on the
nullable side of an outer join, without column aliases) removes exactly the rows the body no
longer removes. A plain DISTINCT commutes with it too. The first such conjunct of the first
qualifying CTE moves; a recursive WITH and CTEs with column lists are left alone.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "WITH big AS (SELECT o.user_id, o.amount FROM orders AS o WHERE o.amount > 1000) SELECT a.user_id FROM big AS a JOIN big AS b ON a.user_id = b.user_id"
>>> print(pull_predicates_out_of_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
WITH big AS (SELECT o.user_id, o.amount FROM orders AS o) SELECT a.user_id FROM big AS a JOIN big AS b ON a.user_id = b.user_id WHERE a.amount > 1000 AND b.amount > 1000
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic, simple_select
from model.corpus.slowdowns.materialize_ctes import references
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts


def pull_predicates_out_of_ctes(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    for with_ in tree.find_all(exp.With):
        scope = with_.parent
        if with_.args.get("recursive") or scope is None:
            continue
        for cte in with_.expressions:
            if _pull(cte, scope):
                return tree
    return None


def _pull(cte: exp.CTE, scope: exp.Expr) -> bool:
    body = cte.this
    name = cte.alias_or_name.lower()
    alias = cte.args.get("alias")
    if not isinstance(body, exp.Select) or not simple_select(body) or not deterministic(body):
        return False
    if (alias is not None and alias.columns) or references(body, name):
        return False
    if any(other is not cte and other.alias_or_name.lower() == name for other in scope.find_all(exp.CTE)):
        return False
    refs = references(scope, name)
    if not refs or not all(_plain_reference(ref) for ref in refs):
        return False
    outputs = _outputs(body)
    where = body.args.get("where")
    parts = conjuncts(where.this if where is not None else None)
    for index, part in enumerate(parts):
        mapped = _mapped(part, outputs)
        if mapped is None:
            continue
        kept = [p.copy() for i, p in enumerate(parts) if i != index]
        body.set("where", exp.Where(this=and_all(kept)) if kept else None)
        for ref in refs:
            select = ref.parent_select
            assert isinstance(select, exp.Select)
            qualifier = ref.alias_or_name
            moved = mapped.copy()
            for column in moved.find_all(exp.Column):
                column.set("table", exp.to_identifier(qualifier))
            outer_where = select.args.get("where")
            select.set("where", exp.Where(this=and_all(
                [*(p.copy() for p in conjuncts(outer_where.this if outer_where is not None else None)), moved])))
        return True
    return False


def _plain_reference(ref: exp.Table) -> bool:
    select = ref.parent_select
    if not isinstance(select, exp.Select):
        return False
    alias = ref.args.get("alias")
    if alias is not None and alias.columns:
        return False
    parent = ref.parent
    if isinstance(parent, exp.From):
        return not any(j.side in ("RIGHT", "FULL") for j in select.args.get("joins") or [])
    if isinstance(parent, exp.Join):
        return not parent.side and not parent.args.get("lateral")
    return False


def _outputs(body: exp.Select) -> dict[str, str]:
    """SQL text of each plain-column item → the name it is output under."""
    outputs: dict[str, str] = {}
    for item in body.expressions:
        value = item.this if isinstance(item, exp.Alias) else item
        if isinstance(value, exp.Column) and not isinstance(value.this, exp.Star):
            outputs.setdefault(value.sql(dialect="postgres"), item.alias_or_name)
    return outputs


def _mapped(part: exp.Expr, outputs: dict[str, str]) -> exp.Expr | None:
    """``part`` over output names (columns unqualified, to be qualified per reference), or None."""
    if part.find(exp.Query, exp.AggFunc, exp.Window):
        return None
    columns = list(part.find_all(exp.Column))
    if not columns or any(c.sql(dialect="postgres") not in outputs for c in columns):
        return None
    mapped = part.copy()
    for column in list(mapped.find_all(exp.Column)):
        column.replace(exp.column(outputs[column.sql(dialect="postgres")]))
    return mapped
