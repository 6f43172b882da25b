"""``SELECT … WHERE R AND A UNION ALL SELECT … WHERE R AND B AND (A) IS NOT TRUE`` → ``SELECT … WHERE
R AND (A OR B)``. The inverse of the rules backend's ``or_to_union_all`` (which writes exactly
this disjoint form).

Why it is slower (where the rule found the union faster): each branch could start from its own
index; the OR over two tables' columns can be served by neither, so both tables are scanned in
full and joined before the filter.

Why it is equivalent: the branches are disjoint (the second keeps only rows where A is not TRUE)
and together keep each row passing R where A or B is TRUE, once: the multiset is that of the
single SELECT filtered by ``R AND (A OR B)``. Preconditions: a UNION ALL of exactly two plain
SELECTs (no DISTINCT, GROUP BY, aggregates, windows, LIMIT, WITH, locking; the union itself has no
ORDER BY or LIMIT) identical except for their WHERE; the second WHERE contains ``(A) IS NOT
TRUE`` for A a conjunct of the first; removing A from the first and ``(A) IS NOT TRUE`` from the
second leaves R in the first and R plus B in the second; no volatile function.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("SELECT o.id FROM orders AS o JOIN users AS u ON u.id = o.user_id WHERE o.amount > 1900 UNION ALL "
...        "SELECT o.id FROM orders AS o JOIN users AS u ON u.id = o.user_id WHERE u.country = 'JP' AND (o.amount > 1900) IS NOT TRUE")
>>> print(union_all_to_or(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT o.id FROM orders AS o JOIN users AS u ON u.id = o.user_id WHERE o.amount > 1900 OR u.country = 'JP'
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic, simple_select
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts


def union_all_to_or(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for union in list(tree.find_all(exp.Union)):
        merged = _merged(union)
        if merged is not None:
            if union is tree:
                tree = merged
            else:
                union.replace(merged)
            fired = True
    return tree if fired else None


def _merged(union: exp.Union) -> exp.Select | None:
    if union.args.get("distinct") or any(union.args.get(k) for k in ("order", "limit", "offset", "with_")):
        return None
    first, second = union.this, union.expression
    if not (isinstance(first, exp.Select) and isinstance(second, exp.Select)):
        return None
    if not (simple_select(first) and simple_select(second)) or first.args.get("distinct") or second.args.get("distinct"):
        return None
    if first.args.get("order") or second.args.get("order") or not deterministic(union):
        return None
    if _without_where(first) != _without_where(second):
        return None
    first_parts = [p.sql(dialect="postgres") for p in conjuncts(_where(first))]
    second_nodes = conjuncts(_where(second))
    for index, node in enumerate(second_nodes):
        guarded = _is_not_true(node)
        if guarded is None or guarded not in first_parts:
            continue
        rest = [p for p in first_parts if p != guarded]
        if len(rest) != len(first_parts) - 1:
            continue
        others = [n for i, n in enumerate(second_nodes) if i != index]
        texts = [n.sql(dialect="postgres") for n in others]
        if any(texts.count(r) < 1 for r in rest):
            continue
        b_parts = [n for n in others if n.sql(dialect="postgres") not in rest]
        if not b_parts:
            continue
        a_node = next(p for p in conjuncts(_where(first)) if p.sql(dialect="postgres") == guarded)
        r_nodes = [p for p in conjuncts(_where(first)) if p.sql(dialect="postgres") != guarded]
        either = exp.Or(this=_paren(a_node.copy()), expression=_paren(and_all([b.copy() for b in b_parts])))
        merged = first.copy()
        merged.set("where", exp.Where(this=and_all([*(r.copy() for r in r_nodes), either])))
        return merged
    return None


def _where(select: exp.Select) -> exp.Expr | None:
    where = select.args.get("where")
    return where.this if where is not None else None


def _without_where(select: exp.Select) -> str:
    copy = select.copy()
    copy.set("where", None)
    return copy.sql(dialect="postgres")


def _is_not_true(node: exp.Expr) -> str | None:
    if not (isinstance(node, exp.Not) and isinstance(node.this, exp.Is)):
        return None
    truth = node.this.expression
    if not (isinstance(truth, exp.Boolean) and truth.this is True):
        return None
    inner = node.this.this
    return (inner.unnest() if isinstance(inner, exp.Paren) else inner).sql(dialect="postgres")


def _paren(node: exp.Expr | None) -> exp.Expr:
    assert node is not None
    return exp.Paren(this=node) if isinstance(node, exp.Connector) else node
