"""Turn functions of an indexed date/time column compared with a constant into a range on the column.

``extract(year from c) = 2024``, ``date_trunc('month', c) = '2024-02-01'``, ``c::date = '2024-02-29'``
(also ``<``, ``<=``, ``>``, ``>=`` for the cast) and ``to_char(c, 'YYYY-MM-DD') = '2024-02-29'``
become a half-open range ``c >= lo AND c < hi`` that a B-tree index on ``c`` can serve.
``c::date = $1`` (a statement from pg_stat_statements, constants normalized to parameters) becomes
``c >= CAST($1 AS DATE) AND c < CAST($1 AS DATE) + 1``: true for every value of ``$1``.

Constraints relied on:

- Range rewrite only for columns the catalog types as ``date``, ``timestamp`` or ``timestamptz``.
- The constant must be a literal calendar date aligned to the unit (``date_trunc('month', c) =
  '2024-02-15'`` is never true and is left alone). Bounds are emitted as ``DATE`` literals, which
  PostgreSQL converts to midnight in the session time zone, the same zone ``date_trunc``,
  ``extract`` and ``::date`` use for ``timestamptz``.
- A NULL column gives NULL on both sides, so the rewrite is equivalent in any boolean context.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("created_at", "timestamp without time zone", False),))
>>> tree = sqlglot.parse_one("SELECT 1 FROM orders WHERE extract(year from created_at) = 2024", read="postgres")
>>> sargable_predicates(tree, Catalog({"public.orders": orders})).sql(dialect="postgres")
"SELECT 1 FROM orders WHERE created_at >= CAST('2024-01-01' AS DATE) AND created_at < CAST('2025-01-01' AS DATE)"
"""

from __future__ import annotations

import datetime as dt
import re

from sqlglot import exp

from sidecar.catalog import DATE_TYPES, Catalog
from sidecar.rules._scope import resolve_column

_DATE_LITERAL = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[ T]00:00(?::00(?:\.0+)?)?)?\s*$")
_COMPARISONS = (exp.EQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
_MIRROR: dict[type[exp.Expr], type[exp.Expr]] = {
    exp.EQ: exp.EQ,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
}
_TO_CHAR_UNITS = {"%Y-%m-%d": "day", "%Y-%m": "month", "%Y": "year"}


def sargable_predicates(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        for comparison in list(select.find_all(*_COMPARISONS)):
            if comparison.parent_select is not select:
                continue
            replacement = _rewrite(comparison, select, catalog)
            if replacement is not None:
                if not isinstance(comparison.parent, (exp.Where, exp.And, exp.Join)):
                    replacement = exp.paren(replacement, copy=False)
                comparison.replace(replacement)
                fired = True
    return tree if fired else None


def _rewrite(
    comparison: exp.Binary, select: exp.Select, catalog: Catalog
) -> exp.Expr | None:
    op: type[exp.Expr] = type(comparison)
    left, right = comparison.left, comparison.right
    if _is_constant(left) and not _is_constant(right):
        left, right, op = right, left, _MIRROR[op]
    if _is_constant(left):
        return None

    unit: str | None = None
    column: exp.Expr | None = None
    start: dt.date | None = None
    if isinstance(left, exp.Extract) and op is exp.EQ:
        if left.this.name.lower() != "year" or not isinstance(right, exp.Literal):
            return None
        if right.is_string or not right.name.isdigit():
            return None
        column, unit, start = left.expression, "year", dt.date(int(right.name), 1, 1)
    elif isinstance(left, (exp.TimestampTrunc, exp.DateTrunc)) and op is exp.EQ:
        given = left.args.get("unit")
        unit = given.name.lower() if given is not None else None
        column, start = left.this, _date_constant(right)
    elif isinstance(left, exp.TimeToStr) and op is exp.EQ:
        unit = _TO_CHAR_UNITS.get(left.text("format"))
        column = left.this
        if isinstance(right, exp.Literal) and right.is_string and unit is not None:
            start = _parse_partial(right.name, unit)
    elif isinstance(left, exp.Cast) and left.to.is_type(exp.DataType.Type.DATE):
        parameter = _parameter(right)
        if parameter is not None:
            return _parameter_range(left.this, op, parameter, select, catalog)
        column, unit, start = left.this, "day", _date_constant(right)
    if unit not in ("day", "month", "year") or start is None or not isinstance(column, exp.Column):
        return None
    if start != _truncate(start, unit):
        return None
    resolved = resolve_column(column, select, catalog)
    if resolved is None or resolved[2].data_type not in DATE_TYPES:
        return None

    # Only ``c::date <op> d`` reaches _range with an operator other than ``=`` (unit == "day").
    return _range(column, op, _date_literal(start), _date_literal(_advance(start, unit)))


def _range(column: exp.Expr, op: type[exp.Expr], lower: exp.Expr,
           upper: exp.Expr) -> exp.Expr:
    """``f(c) <op> x`` as bounds on ``c``, where ``[lower, upper)`` is the range with ``f(c) = x``."""
    bare = column.copy()
    if op is exp.EQ:
        return exp.and_(exp.GTE(this=bare, expression=lower), exp.LT(this=bare.copy(), expression=upper))
    if op is exp.LT:
        return exp.LT(this=bare, expression=lower)
    if op is exp.LTE:
        return exp.LT(this=bare, expression=upper)
    if op is exp.GT:
        return exp.GTE(this=bare, expression=upper)
    return exp.GTE(this=bare, expression=lower)


def _is_constant(node: exp.Expr) -> bool:
    if isinstance(node, (exp.Literal, exp.Parameter, exp.Placeholder)):
        return True
    return isinstance(node, exp.Cast) and isinstance(node.this, (exp.Literal, exp.Parameter, exp.Placeholder))


def _parameter(node: exp.Expr) -> exp.Expr | None:
    """``$n`` itself, or ``$n`` cast to a date or timestamp type."""
    if isinstance(node, exp.Cast) and node.to.this in (
        exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ,
    ):
        node = node.this
    return node if isinstance(node, (exp.Parameter, exp.Placeholder)) else None


def _parameter_range(column: exp.Expr, op: type[exp.Expr], parameter: exp.Expr,
                     select: exp.Select, catalog: Catalog) -> exp.Expr | None:
    """``c::date <op> $n`` as a range on ``c``, with the day bounds computed from ``$n`` by the server.

    >>> import sqlglot
    >>> from sidecar.catalog import Catalog, Column, Table
    >>> orders = Table("public", "orders", (Column("created_at", "timestamp without time zone", False),))
    >>> tree = sqlglot.parse_one("SELECT 1 FROM orders WHERE created_at::date = $1", read="postgres")
    >>> sargable_predicates(tree, Catalog({"public.orders": orders})).sql(dialect="postgres")
    'SELECT 1 FROM orders WHERE created_at >= CAST($1 AS DATE) AND created_at < CAST($1 AS DATE) + 1'
    """
    if not isinstance(column, exp.Column):
        return None
    resolved = resolve_column(column, select, catalog)
    if resolved is None or resolved[2].data_type not in DATE_TYPES:
        return None
    lower = exp.cast(parameter.copy(), exp.DataType.Type.DATE)
    upper = exp.Add(this=exp.cast(parameter.copy(), exp.DataType.Type.DATE), expression=exp.Literal.number(1))
    return _range(column, op, lower, upper)


def _date_constant(node: exp.Expr) -> dt.date | None:
    if isinstance(node, exp.Cast) and node.to.this in (
        exp.DataType.Type.DATE,
        exp.DataType.Type.TIMESTAMP,
        exp.DataType.Type.TIMESTAMPTZ,
    ):
        node = node.this
    if not (isinstance(node, exp.Literal) and node.is_string):
        return None
    match = _DATE_LITERAL.match(node.name)
    if match is None:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _parse_partial(text: str, unit: str) -> dt.date | None:
    pattern = {"day": r"(\d{4})-(\d{2})-(\d{2})", "month": r"(\d{4})-(\d{2})", "year": r"(\d{4})"}[unit]
    match = re.fullmatch(pattern, text)
    if match is None:
        return None
    parts = [int(group) for group in match.groups()] + [1, 1]
    try:
        return dt.date(parts[0], parts[1], parts[2])
    except ValueError:
        return None


def _truncate(day: dt.date, unit: str) -> dt.date:
    if unit == "year":
        return day.replace(month=1, day=1)
    if unit == "month":
        return day.replace(day=1)
    return day


def _advance(day: dt.date, unit: str) -> dt.date:
    if unit == "year":
        return day.replace(year=day.year + 1)
    if unit == "month":
        return day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)
    return day + dt.timedelta(days=1)


def _date_literal(day: dt.date) -> exp.Expr:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.Type.DATE)
