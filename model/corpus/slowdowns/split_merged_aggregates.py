"""A CTE of single-row ``FILTER`` aggregates read through scalar subqueries → one aggregate subquery
per read: ``WITH a AS MATERIALIZED (SELECT count(*) FILTER (WHERE q = 1) AS n1, … FROM t WHERE w)
… (SELECT n1 FROM a) …`` → ``… (SELECT count(*) FROM t WHERE w AND q = 1) …``. The inverse of the
rules backend's ``merge_scalar_aggregates`` (TPC-DS Q09/Q28/Q88 written bucket by bucket).

Why it is slower: the CTE scans ``t`` once for every bucket; split, PostgreSQL scans it once per
subquery (it has no common-subexpression elimination across subqueries).

Why it is equivalent: the CTE's body has no GROUP BY, so it is one row whatever the data, and its
column ``n1`` is the aggregate over the rows passing ``w`` for which the FILTER condition is TRUE,
which is the same aggregate over the rows passing ``w AND f`` (``count`` is 0 and the others NULL
over no rows, in both). Preconditions: a non-recursive CTE whose body is ``SELECT <aggregates>
FROM … [WHERE …]`` (each item an aliased count/sum/avg/min/max call, optionally with FILTER; no
GROUP BY, HAVING, DISTINCT, window, LIMIT, WITH), deterministic, and whose every reference is a
read of one column, ``(SELECT <column> [AS name] FROM <cte>)``, as a scalar subquery or a derived
table, and nothing else; the aggregate keeps the name the read gave its column.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("WITH a AS MATERIALIZED (SELECT COUNT(*) FILTER(WHERE quantity = 1) AS n1, AVG(amount) FILTER(WHERE quantity = 2) AS a2 "
...        "FROM orders WHERE quantity = 1 OR quantity = 2) SELECT (SELECT n1 FROM a) AS one, (SELECT a2 FROM a) AS two")
>>> print(split_merged_aggregates(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT (SELECT COUNT(*) AS n1 FROM orders WHERE (quantity = 1 OR quantity = 2) AND quantity = 1) AS one, (SELECT AVG(amount) AS a2 FROM orders WHERE (quantity = 1 OR quantity = 2) AND quantity = 2) AS two
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from model.corpus.slowdowns.materialize_ctes import references
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts

_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)


def split_merged_aggregates(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    for with_ in list(tree.find_all(exp.With)):
        scope = with_.parent
        if with_.args.get("recursive") or scope is None:
            continue
        for cte in with_.expressions:
            if _split(cte, scope):
                remaining = [c for c in with_.expressions if c is not cte]
                if remaining:
                    with_.set("expressions", remaining)
                else:
                    with_.pop()
                return tree
    return None


def _split(cte: exp.CTE, scope: exp.Expr) -> bool:
    body = cte.this
    name = cte.alias_or_name.lower()
    if not isinstance(body, exp.Select) or body.args.get("from_") is None or not deterministic(body):
        return False
    if any(body.args.get(k) for k in ("group", "having", "distinct", "windows", "limit", "offset", "with_", "order")):
        return False
    alias = cte.args.get("alias")
    if alias is not None and alias.columns:
        return False
    items: dict[str, exp.Expr] = {}
    for item in body.expressions:
        if not isinstance(item, exp.Alias):
            return False
        value = item.this
        core = value.this if isinstance(value, exp.Filter) else value
        if not isinstance(core, _AGGREGATES) or core.find(exp.Window, exp.Query):
            return False
        items[item.alias.lower()] = value
    refs = references(scope, name)
    if not refs or references(body, name):
        return False
    reads: list[tuple[exp.Subquery, exp.Expr, str]] = []
    for ref in refs:
        read = ref.parent_select
        wrapper = read.parent if read is not None else None
        if not (isinstance(read, exp.Select) and isinstance(wrapper, exp.Subquery) and ref.parent is read.args.get("from_")):
            return False
        if any(read.args.get(k) for k in ("where", "joins", "group", "having", "order", "limit", "distinct", "with_")):
            return False
        if len(read.expressions) != 1 or ref.alias:
            return False
        item = read.expressions[0]
        column = item.this if isinstance(item, exp.Alias) else item
        chosen = items.get(column.name.lower()) if isinstance(column, exp.Column) else None
        if chosen is None:
            return False
        reads.append((wrapper, chosen, item.alias_or_name))
    where = body.args.get("where")
    common = conjuncts(where.this if where is not None else None)
    for wrapper, chosen, output in reads:
        aggregate = chosen.this if isinstance(chosen, exp.Filter) else chosen
        condition = chosen.expression.this if isinstance(chosen, exp.Filter) else None
        parts = [_wrapped(p.copy()) for p in common] + ([_wrapped(condition.copy())] if condition is not None else [])
        named = exp.Alias(this=aggregate.copy(), alias=exp.to_identifier(output))  # the column keeps its name
        single = exp.select(named).from_(body.args["from_"].this.copy())
        for join in body.args.get("joins") or []:
            single.append("joins", join.copy())
        if parts:
            single.set("where", exp.Where(this=and_all(parts)))
        wrapper.set("this", single)
    return True


def _wrapped(node: exp.Expr) -> exp.Expr:
    return exp.Paren(this=node) if isinstance(node, exp.Or) else node
