"""Turn functions of an indexed date/time column compared with a constant into a range on the column.

``extract(year from c) = 2024``, ``date_trunc('month', c) = '2024-02-01'``, ``c::date = '2024-02-29'``
(also ``<``, ``<=``, ``>``, ``>=`` for the cast) and ``to_char(c, 'YYYY-MM-DD') = '2024-02-29'``
become a half-open range ``c >= lo AND c < hi`` that a B-tree index on ``c`` can serve.
``c::date = $1`` (a statement from pg_stat_statements, constants normalized to parameters) becomes
``c >= CAST($1 AS DATE) AND c < CAST($1 AS DATE) + 1``: true for every value of ``$1``.

``extract(year from c) = Y AND extract(month from c) = M`` (also ``date_part('year', c)``, and
with ``extract(day from c) = D`` too) becomes one range of the month (the day): alone, the month
field bounds nothing, so the year becomes a year range and the month stays an expression over
every row of that year.

Constraints relied on:

- Range rewrite only for columns the catalog types as ``date``, ``timestamp`` or ``timestamptz``.
- The constant must be a literal calendar date aligned to the unit (``date_trunc('month', c) =
  '2024-02-15'`` is never true and is left alone); the fields an integer literal each, making a
  valid date (``month = 13`` or February 30 are left as written). Bounds are emitted as ``DATE``
  literals.
- ``date`` and ``timestamp`` columns: ``extract``, ``date_trunc``, ``::date`` and ``to_char`` are
  calendar arithmetic on the value itself, so the range replaces the expression exactly.
- ``timestamptz`` columns: the functions work in the session time zone, and so does the DATE
  bound (midnight there) — except where local midnight is ambiguous (a zone that falls back from
  01:00 to 00:00, as America/Havana on 2015-11-01 or Atlantic/Azores every October): PostgreSQL
  takes the later of the two midnights, so an exact range would lose the first hour of the day.
  So for ``timestamptz`` the range only narrows the scan: its lower bound is one day earlier
  (``c >= d - 1``: earlier than any midnight of ``d``), the upper bound is exact (every instant of
  an earlier local date precedes every instant of ``d``), and the original comparison is kept
  after it as a recheck. The range is implied by the comparison, so adding it changes no row in
  any time zone. A comparison already behind such a range is not rewritten again.
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
import functools
import re

from sqlglot import exp

from sidecar.catalog import DATE_TYPES, Catalog
from sidecar.rules._scope import and_all, conjuncts, resolve_column

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
TIMESTAMPTZ = "timestamp with time zone"


def sargable_predicates(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        comparisons = list(select.find_all(*_COMPARISONS))
        fired = _combine_calendar_fields(select, catalog) or fired
        for comparison in comparisons:
            if comparison.parent_select is not select or comparison.root() is not tree:
                continue  # inside a subquery, or a field combined (and, for timestamptz, rechecked) above
            replacement = _rewrite(comparison, select, catalog)
            if replacement is not None and not _bounded_already(comparison, replacement, [comparison]):
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
            return _parameter_range(left.this, op, parameter, comparison, select, catalog)
        column, unit, start = left.this, "day", _date_constant(right)
    if unit not in ("day", "month", "year") or start is None or not isinstance(column, exp.Column):
        return None
    if start != _truncate(start, unit):
        return None
    resolved = resolve_column(column, select, catalog)
    if resolved is None or resolved[2].data_type not in DATE_TYPES:
        return None

    # Only ``c::date <op> d`` reaches _range with an operator other than ``=`` (unit == "day").
    return _range(column, op, _date_literal(start), _date_literal(_advance(start, unit)),
                  comparison if resolved[2].data_type == TIMESTAMPTZ else None)


def _range(column: exp.Expr, op: type[exp.Expr], lower: exp.Expr, upper: exp.Expr,
           recheck: exp.Expr | None = None) -> exp.Expr:
    """``f(c) <op> x`` as bounds on ``c``, where ``[lower, upper)`` is the range with ``f(c) = x``.

    With ``recheck`` (a ``timestamptz`` column: see the module) every lower bound is one day
    earlier and ``recheck``, the original comparison, is kept after the bounds."""
    bare = column.copy()
    below = exp.Sub(this=lower.copy(), expression=exp.Literal.number(1)) if recheck is not None else lower
    if op is exp.EQ:
        bounds = exp.and_(exp.GTE(this=bare, expression=below), exp.LT(this=bare.copy(), expression=upper))
    elif op is exp.LT:
        bounds = exp.LT(this=bare, expression=lower)
    elif op is exp.LTE:
        bounds = exp.LT(this=bare, expression=upper)
    elif op is exp.GT:
        bounds = exp.GTE(this=bare, expression=exp.Sub(this=upper, expression=exp.Literal.number(1))
                         if recheck is not None else upper)
    else:
        bounds = exp.GTE(this=bare, expression=below)
    if recheck is None:
        return bounds
    parts = [*conjuncts(bounds), *conjuncts(recheck.copy())]
    return functools.reduce(lambda left, right: exp.And(this=left, expression=right), parts)


def _bounded_already(node: exp.Expr, replacement: exp.Expr, originals: list[exp.Expr]) -> bool:
    """Are the bounds of ``replacement`` (its conjuncts other than the rechecked ``originals``)
    already conjuncts beside ``node``? Then this rule rewrote ``node`` before and kept it as the
    recheck of a ``timestamptz`` range: rewriting it again would only repeat the range."""
    top = node
    while isinstance(top.parent, (exp.And, exp.Paren)):
        top = top.parent
    present = {part.sql(dialect="postgres") for part in conjuncts(top)}
    kept = {original.sql(dialect="postgres") for original in originals}
    bounds = [part.sql(dialect="postgres") for part in conjuncts(replacement)]
    return all(bound in present for bound in bounds if bound not in kept)


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


def _parameter_range(column: exp.Expr, op: type[exp.Expr], parameter: exp.Expr, comparison: exp.Expr,
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
    return _range(column, op, lower, upper, comparison if resolved[2].data_type == TIMESTAMPTZ else None)


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


_FIELDS = ("year", "month", "day")


def _combine_calendar_fields(select: exp.Select, catalog: Catalog) -> bool:
    """``extract(year from c) = Y AND extract(month from c) = M [AND extract(day from c) = D]``
    (also ``date_part('year', c)``, conjuncts in any order and among others, in WHERE or an ON)
    as one range of ``c``: the month (or the day). Alone, the month or day field says nothing
    about ``c``'s range; together with the year it is one interval."""
    conditions: list[exp.Expr] = []
    where = select.args.get("where")
    if where is not None:
        conditions.append(where)
    conditions.extend(join for join in select.args.get("joins") or [] if join.args.get("on") is not None)
    fired = False
    for holder in conditions:
        key = "this" if isinstance(holder, exp.Where) else "on"
        parts = conjuncts(holder.args[key])
        fields: dict[str, dict[str, tuple[int, int]]] = {}  # column text → field → (conjunct index, value)
        columns: dict[str, exp.Column] = {}
        for index, part in enumerate(parts):
            found = _calendar_field(part)
            if found is not None:
                column, field, value = found
                text = column.sql(dialect="postgres")
                columns[text] = column
                fields.setdefault(text, {}).setdefault(field, (index, value))
        replaced: dict[int, exp.Expr] = {}
        for text, found_fields in fields.items():
            if "year" not in found_fields or "month" not in found_fields:
                continue
            used = [name for name in _FIELDS if name in found_fields]
            year, month = found_fields["year"][1], found_fields["month"][1]
            day = found_fields["day"][1] if "day" in found_fields else 1
            try:
                start = dt.date(year, month, day)
                end = _advance(start, "day" if "day" in found_fields else "month")
            except (ValueError, OverflowError):
                continue  # never true (February 30) or out of range: left as written
            column = columns[text]
            resolved = resolve_column(column, select, catalog)
            if resolved is None or resolved[2].data_type not in DATE_TYPES:
                continue
            originals = [parts[found_fields[name][0]] for name in used]
            recheck = and_all([o.copy() for o in originals]) if resolved[2].data_type == TIMESTAMPTZ else None
            combined = _range(column, exp.EQ, _date_literal(start), _date_literal(end), recheck)
            if _bounded_already(originals[0], combined, originals):
                continue
            replaced[found_fields["year"][0]] = combined
            for name in used[1:]:
                replaced[found_fields[name][0]] = exp.true()  # dropped below
        if not replaced:
            continue
        kept: list[exp.Expr] = []
        for index, part in enumerate(parts):
            replacement = replaced.get(index)
            if replacement is None:
                kept.append(part)
            elif not isinstance(replacement, exp.Boolean):
                kept.extend(conjuncts(replacement))
        holder.set(key, and_all(kept))
        fired = True
    return fired


def _calendar_field(part: exp.Expr) -> tuple[exp.Column, str, int] | None:
    """(column, field, value) for ``extract(field from column) = integer`` with field year, month
    or day, either side; else None."""
    if not isinstance(part, exp.EQ):
        return None
    extract, value = part.left, part.right
    if not isinstance(extract, exp.Extract):
        extract, value = value, extract
    if not isinstance(extract, exp.Extract) or not isinstance(value, exp.Literal):
        return None
    field = extract.this.name.lower()
    if field not in _FIELDS or value.is_string or not value.name.isdigit():
        return None
    column = extract.expression
    if not isinstance(column, exp.Column):
        return None
    return column, field, int(value.name)
