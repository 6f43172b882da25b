"""A filter on a column → the same filter on a value-preserving expression of it
(``o.quantity > 3`` → ``o.quantity + 0 > 3``, ``u.country_name = 'x'`` → ``u.country_name || '' = 'x'``).

Why it is slower: an index on the column cannot serve a predicate on an expression, and the
planner has no statistics for the expression, so it falls back to default selectivities (a third
for ranges, 0.5 % for equality) and may pick a worse join order too. This is the general form of
"a function on the filtered column" that ``sargable_predicates`` undoes for dates; a model has to
learn the rest.

Why it is equivalent: ``x + 0`` equals ``x`` for every integer, numeric and date value (``date +
integer`` is a date) and is NULL exactly when ``x`` is; ``x || ''`` equals ``x`` for text and
varchar (the comparison runs as text, with the same collation). Only top-level WHERE conjuncts
comparing a column of a catalog table with constants (``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``,
BETWEEN, IN over a list) are rewritten; ``char(n)`` columns are not (``||`` would drop their
padding semantics), nor floating-point ones (left as they are, to keep the argument simple).

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("quantity", "integer", False), Column("status", "text", False)))
>>> sql = "SELECT count(*) FROM orders AS o WHERE o.quantity BETWEEN 2 AND 4 AND o.status IN ('paid', 'new')"
>>> print(wrap_filtered_columns(sqlglot.parse_one(sql, read="postgres"), Catalog({"public.orders": orders})).sql(dialect="postgres"))
SELECT COUNT(*) FROM orders AS o WHERE o.quantity + 0 BETWEEN 2 AND 4 AND o.status || '' IN ('paid', 'new')
>>> wrap_filtered_columns(sqlglot.parse_one(sql, read="postgres"), Catalog()) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import conjuncts, resolve_column

_ADD_ZERO = ("smallint", "integer", "bigint", "numeric", "date")
_CONCAT_EMPTY = ("text", "character varying")
_COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)


def wrap_filtered_columns(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        where = select.args.get("where")
        for predicate in conjuncts(where.this if where is not None else None):
            for column in _filtered_columns(predicate):
                wrapped = _wrapped(column, select, catalog)
                if wrapped is not None:
                    column.replace(wrapped)
                    fired = True
    return tree if fired else None


def _constant(node: exp.Expr) -> bool:
    return node.find(exp.Column, exp.Query) is None


def _filtered_columns(predicate: exp.Expr) -> list[exp.Column]:
    if isinstance(predicate, _COMPARISONS):
        left, right = predicate.this, predicate.expression
        if isinstance(left, exp.Column) and _constant(right):
            return [left]
        if isinstance(right, exp.Column) and _constant(left):
            return [right]
    if (isinstance(predicate, exp.Between) and isinstance(predicate.this, exp.Column)
            and _constant(predicate.args["low"]) and _constant(predicate.args["high"])):
        return [predicate.this]
    if (isinstance(predicate, exp.In) and isinstance(predicate.this, exp.Column) and not predicate.args.get("query")
            and predicate.expressions and all(_constant(e) for e in predicate.expressions)):
        return [predicate.this]
    return []


def _wrapped(column: exp.Column, select: exp.Select, catalog: Catalog) -> exp.Expr | None:
    resolved = resolve_column(column, select, catalog)
    if resolved is None:
        return None
    data_type = resolved[2].data_type.split("(")[0].strip()
    if data_type in _ADD_ZERO:
        return exp.Add(this=column.copy(), expression=exp.Literal.number(0))
    if data_type in _CONCAT_EMPTY:
        return exp.DPipe(this=column.copy(), expression=exp.Literal.string(""))
    return None
