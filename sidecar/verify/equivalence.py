"""Equivalence on the live data: result multisets, order-aware where the original's ORDER BY fixes one.

Pure functions over fetched rows (LASER Eq.2: rows hashed after a deterministic sort), and
`ResultDigest`, the same comparison over a result that streams by in bounded memory: a small result
is kept whole and compared row by row (with examples of differences); a large one is compared by
its row count and order-insensitive and ordered hashes of its canonical rows.
"""
from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast import ast
from pglast.enums import SetOperation
from pglast.stream import RawStream

FLOAT_DIGITS = 10
KEEP_ROWS = 10_000
"""A result of at most this many rows is kept whole; a larger one only as its digest."""
_MODULUS = 1 << 256


@dataclass(frozen=True)
class OrderSpec:
    """What the original's top-level clauses promise about row order and row count.

    `keys` are output-column positions of the ORDER BY (None when a key is not an output column).
    """

    ordered: bool = False
    keys: tuple[int, ...] | None = ()
    limited: bool = False
    """The original has LIMIT or OFFSET."""
    limit: int | None = None
    """The constant LIMIT count (None: none, or not a constant)."""
    offset: bool = False
    """The original has an OFFSET."""
    deterministic: bool = False
    """The ORDER BY provably fixes which rows a LIMIT/OFFSET keeps: its keys cover every output
    column (tied rows are identical), or every GROUP BY expression of a grouped query (no two output
    rows tie)."""

    def fixes_rows(self, original_rows: int) -> bool:
        """Does the original's result say which rows it holds, although it is LIMITed?

        Proven by the ORDER BY, or the LIMIT was not reached (no OFFSET): all rows came back.

        >>> OrderSpec(True, (0,), limited=True, limit=100).fixes_rows(42)
        True
        >>> OrderSpec(True, (0,), limited=True, limit=100).fixes_rows(100)
        False
        >>> OrderSpec(True, (0,), limited=True, limit=100, offset=True).fixes_rows(42)
        False
        """
        if not self.limited or self.deterministic:
            return True
        return not self.offset and self.limit is not None and original_rows < self.limit


@dataclass(frozen=True)
class Comparison:
    """The verdict of comparing two results."""

    equal: bool
    verifiable: bool = True
    reason: str = ""
    examples: dict[str, Any] = field(default_factory=dict)


def order_spec(stmt: ast.SelectStmt, column_names: Sequence[str]) -> OrderSpec:
    """Read ORDER BY / LIMIT / OFFSET of the top-level query.

    >>> import pglast
    >>> order_spec(pglast.parse_sql("SELECT a, b FROM t ORDER BY 2, a")[0].stmt, ["a", "b"]).keys
    (1, 0)
    >>> order_spec(pglast.parse_sql("SELECT a FROM t ORDER BY a + 1 LIMIT 3")[0].stmt, ["a"]).keys is None
    True
    >>> spec = order_spec(pglast.parse_sql(
    ...     "SELECT s.st AS state, count(*) AS n FROM s GROUP BY s.st ORDER BY n, s.st LIMIT 100")[0].stmt,
    ...     ["state", "n"])
    >>> spec.keys, spec.limit, spec.deterministic
    ((1, 0), 100, True)
    >>> order_spec(pglast.parse_sql("SELECT a, b FROM t ORDER BY a LIMIT 5")[0].stmt, ["a", "b"]).deterministic
    False
    """
    limited = stmt.limitCount is not None or stmt.limitOffset is not None
    limit = None
    if isinstance(stmt.limitCount, ast.A_Const) and isinstance(stmt.limitCount.val, ast.Integer):
        limit = stmt.limitCount.val.ival
    offset = stmt.limitOffset is not None
    sort = stmt.sortClause or ()
    if not sort:
        return OrderSpec(ordered=False, keys=(), limited=limited, limit=limit, offset=offset)
    names = [n.lower() for n in column_names]
    targets = _target_texts(stmt)
    keys: list[int] = []
    exact = True
    for item in sort:
        position, certain = _output_position(item.node, names, targets)
        if position is None:
            return OrderSpec(ordered=True, keys=None, limited=limited, limit=limit, offset=offset)
        keys.append(position)
        exact = exact and certain
    deterministic = limited and exact and _rows_fixed_by(stmt, set(keys), targets, len(names))
    return OrderSpec(ordered=True, keys=tuple(keys), limited=limited, limit=limit, offset=offset,
                     deterministic=deterministic)


def _text(node: ast.Node) -> str:
    return RawStream()(node).lower()


def _target_texts(stmt: ast.SelectStmt) -> list[str | None]:
    """The deparsed expression of each output column of a plain SELECT (none for set operations)."""
    if stmt.op not in (None, 0, SetOperation.SETOP_NONE) or not stmt.targetList:
        return []
    texts: list[str | None] = []
    for target in stmt.targetList:
        if isinstance(target.val, ast.ColumnRef) and isinstance(_last(target.val), ast.A_Star):
            return []  # a star expands to columns the statement does not name
        texts.append(_text(target.val) if target.val is not None else None)
    return texts


def _output_position(node: ast.Node, names: list[str], targets: list[str | None]) -> tuple[int | None, bool]:
    """The output column an ORDER BY item sorts by, and whether that is certain (by position, by
    output name, or the very expression of an output column) rather than guessed from a qualified
    column's last name."""
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.Integer) and node.val.ival is not None:
        position = node.val.ival - 1
        return (position, True) if 0 <= position < len(names) else (None, False)
    last = _last(node) if isinstance(node, ast.ColumnRef) else None
    if isinstance(node, ast.ColumnRef) and isinstance(last, ast.String) and len(node.fields or ()) == 1:
        name = (last.sval or "").lower()
        if names.count(name) == 1:
            return names.index(name), True
    if len(targets) == len(names):
        text = _text(node)
        if text in targets:
            return targets.index(text), True
    if isinstance(last, ast.String):
        name = (last.sval or "").lower()
        if names.count(name) == 1:
            return names.index(name), False
    return None, False


def _last(column: ast.ColumnRef) -> ast.Node | None:
    """The last part of a column reference (its name, or `*`)."""
    return column.fields[-1] if column.fields else None


def _rows_fixed_by(stmt: ast.SelectStmt, keys: set[int], targets: list[str | None], width: int) -> bool:
    """Do the ORDER BY keys (output positions) leave no ties between different rows?"""
    if keys >= set(range(width)):
        return True  # rows tied on every column are identical
    if not targets or not stmt.groupClause or stmt.distinctClause is not None:
        return False
    covered = {targets[k] for k in keys}
    for group in stmt.groupClause:
        if isinstance(group, ast.GroupingSet):
            return False
        if isinstance(group, ast.A_Const) and isinstance(group.val, ast.Integer) and group.val.ival is not None:
            position = group.val.ival - 1
            if not (0 <= position < width and position in keys):
                return False
            continue
        text = _text(group)
        if text not in covered:
            return False
    return True


def canonical_value(value: Any, digits: int = FLOAT_DIGITS) -> Any:
    """A hashable, comparable stand-in for one value; floats rounded to `digits` significant digits.

    >>> canonical_value(0.1 + 0.2) == canonical_value(0.3)
    True
    >>> canonical_value(decimal.Decimal("1.50")) == canonical_value(decimal.Decimal("1.5"))
    True
    >>> canonical_value({"b": 1, "a": [1, 2]})
    ('json', '{"a": [1, 2], "b": 1}')
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ("float", repr(value))
        return ("num", decimal.Decimal(f"{value:.{digits}g}").normalize())
    if isinstance(value, decimal.Decimal):
        if value.is_nan():
            return ("float", "nan")
        return ("num", value.normalize())
    if isinstance(value, int):
        return ("num", decimal.Decimal(value))
    if isinstance(value, (dict, list)) and not isinstance(value, tuple):
        return ("json", json.dumps(value, sort_keys=True, default=str))
    if isinstance(value, (tuple,)):
        return ("tuple", tuple(canonical_value(v, digits) for v in value))
    if isinstance(value, (datetime.date, datetime.time, datetime.timedelta, uuid.UUID)):
        return (type(value).__name__, value.isoformat() if hasattr(value, "isoformat") else str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("bytes", bytes(value).hex())
    return (type(value).__name__, str(value))


def canonical_row(row: Sequence[Any], digits: int = FLOAT_DIGITS) -> tuple[Any, ...]:
    return tuple(canonical_value(v, digits) for v in row)


class ResultDigest:
    """A result summarised as its rows stream by, in memory that does not grow with it.

    Kept: the row count; the sum modulo 2**256 of a SHA-256 of each canonical row (equal for
    equal multisets whatever the order); a SHA-256 over the canonical rows in order; one over each
    column's canonical values in order (so the sequence of any set of ORDER BY key columns is
    compared without knowing the keys while streaming); and the rows themselves while there are at
    most `keep`.

    >>> a, b = ResultDigest(keep=1), ResultDigest(keep=1)
    >>> for row in [(1, "x"), (2, "y")]: a.add(row)
    >>> for row in [(2, "y"), (1, "x")]: b.add(row)
    >>> a.count, a.complete, a.rows, a.multiset_hash == b.multiset_hash, a.ordered_hash == b.ordered_hash
    (2, False, None, True, False)
    """

    __slots__ = ("_columns", "_kept", "_multiset", "_ordered", "count", "digits", "keep")

    def __init__(self, keep: int = KEEP_ROWS, digits: int = FLOAT_DIGITS) -> None:
        self.keep = keep
        self.digits = digits
        self.count = 0
        self._kept: list[tuple[Any, ...]] = []
        self._multiset = 0
        self._ordered = hashlib.sha256()
        self._columns: list[Any] = []

    @classmethod
    def of(cls, rows: Sequence[Sequence[Any]], keep: int = KEEP_ROWS, digits: int = FLOAT_DIGITS) -> ResultDigest:
        digest = cls(keep, digits)
        for row in rows:
            digest.add(row)
        return digest

    def add(self, row: Sequence[Any]) -> None:
        canonical = canonical_row(row, self.digits)
        # repr() escapes control characters, so b"\n" and b"\0" separate unambiguously.
        text = repr(canonical).encode()
        self._multiset = (self._multiset + int.from_bytes(hashlib.sha256(text).digest(), "big")) % _MODULUS
        self._ordered.update(text + b"\n")
        if not self._columns:
            self._columns = [hashlib.sha256() for _ in canonical]
        for column, value in zip(self._columns, canonical, strict=False):
            column.update(repr(value).encode() + b"\0")
        if self.count < self.keep:
            self._kept.append(tuple(row))
        elif self.count == self.keep:
            self._kept = []  # too large to keep: the hashes alone from here on
        self.count += 1

    @property
    def complete(self) -> bool:
        """The whole result is kept (`rows`)."""
        return self.count <= self.keep

    @property
    def rows(self) -> list[tuple[Any, ...]] | None:
        """Every row, in the order fetched, when the result was small enough to keep; else None."""
        return self._kept if self.complete else None

    @property
    def multiset_hash(self) -> str:
        """Order-independent hash of the result, for evidence and rewards."""
        return f"{self._multiset:064x}"[:16]

    @property
    def ordered_hash(self) -> str:
        return self._ordered.hexdigest()[:16]

    def column_hashes(self, keys: Sequence[int]) -> tuple[str, ...]:
        return tuple(self._columns[k].hexdigest() if k < len(self._columns) else "" for k in keys)


def compare_digests(original: ResultDigest, candidate: ResultDigest, order: OrderSpec = OrderSpec()) -> Comparison:
    """`compare_results` for digests: row by row when both results were kept whole, else by hashes
    (the same verdicts, without examples of differing rows).

    >>> big = ResultDigest.of([(i,) for i in range(5)], keep=2)
    >>> compare_digests(big, ResultDigest.of([(i,) for i in reversed(range(5))], keep=2)).equal
    True
    >>> compare_digests(big, ResultDigest.of([(i,) for i in reversed(range(5))], keep=2), OrderSpec(True, (0,))).reason
    'rows come in a different order than the original ORDER BY fixes'
    >>> compare_digests(big, ResultDigest.of([(i,) for i in range(1, 6)], keep=2)).reason
    'the results differ as multisets (5 rows each; too many to keep, so compared by hash)'
    """
    if original.complete and candidate.complete:
        assert original.rows is not None and candidate.rows is not None
        return compare_results(original.rows, candidate.rows, order, original.digits)
    comparison = _compare_hashes(original, candidate, order)
    return _limited(comparison, order, original.count)


def _compare_hashes(left: ResultDigest, right: ResultDigest, order: OrderSpec) -> Comparison:
    if left.count != right.count:
        return Comparison(False, reason=f"row counts differ: {left.count} vs {right.count}")
    if left._multiset != right._multiset:
        return Comparison(False, reason=f"the results differ as multisets ({left.count} rows each; too many to "
                                        "keep, so compared by hash)")
    if not order.ordered or left._ordered.digest() == right._ordered.digest():
        return Comparison(True)
    if order.keys is None:
        return Comparison(False, verifiable=False,
                          reason="rows come in another order and the ORDER BY keys are not output columns")
    if left.column_hashes(order.keys) != right.column_hashes(order.keys):
        return Comparison(False, reason="rows come in a different order than the original ORDER BY fixes")
    return Comparison(True, reason="equal; rows with tied ORDER BY keys are permuted")


def compare_results(
    original: Sequence[Sequence[Any]],
    candidate: Sequence[Sequence[Any]],
    order: OrderSpec = OrderSpec(),
    digits: int = FLOAT_DIGITS,
) -> Comparison:
    """Compare two results as multisets, and in order where the original's ORDER BY fixes one.

    >>> compare_results([(1,), (2,), (2,)], [(2,), (1,), (2,)]).equal
    True
    >>> compare_results([(1,), (2,), (2,)], [(1,), (2,)]).reason
    'row counts differ: 3 vs 2'
    >>> compare_results([(1, "x"), (1, "y")], [(1, "y"), (1, "x")], OrderSpec(True, (0,))).equal
    True
    >>> compare_results([(1,), (2,)], [(2,), (1,)], OrderSpec(True, (0,))).reason
    'rows come in a different order than the original ORDER BY fixes'
    >>> compare_results([(1,)], [(1,)], OrderSpec(True, (0,), limited=True)).equal
    True
    >>> compare_results([(1,)], [(2,)], OrderSpec(True, (0,), limited=True)).verifiable
    False
    """
    return _limited(_compare(original, candidate, order, digits), order, len(original))


def _limited(comparison: Comparison, order: OrderSpec, original_rows: int) -> Comparison:
    """A comparison read in the light of the original's LIMIT/OFFSET (see OrderSpec.fixes_rows)."""
    if order.fixes_rows(original_rows):
        return comparison
    if comparison.equal:
        return Comparison(True, reason="equal (the original's LIMIT may cut between tied rows; these agree)")
    return Comparison(
        equal=False,
        verifiable=False,
        reason="the original has LIMIT/OFFSET, the rows it keeps are not proven unique, and the results differ",
        examples=comparison.examples,
    )


def _compare(original: Sequence[Sequence[Any]], candidate: Sequence[Sequence[Any]], order: OrderSpec,
             digits: int) -> Comparison:
    left = [canonical_row(r, digits) for r in original]
    right = [canonical_row(r, digits) for r in candidate]
    if len(left) != len(right):
        return Comparison(False, reason=f"row counts differ: {len(left)} vs {len(right)}",
                          examples=_differences(left, right))
    left_counts, right_counts = Counter(left), Counter(right)
    if left_counts != right_counts:
        return Comparison(False, reason="the results differ as multisets",
                          examples=_differences(left, right))
    if not order.ordered or left == right:
        return Comparison(True)
    if order.keys is None:
        return Comparison(
            False,
            verifiable=False,
            reason="rows come in another order and the ORDER BY keys are not output columns",
        )
    keys = order.keys
    if [tuple(r[k] for k in keys) for r in left] != [tuple(r[k] for k in keys) for r in right]:
        return Comparison(False, reason="rows come in a different order than the original ORDER BY fixes")
    return Comparison(True, reason="equal; rows with tied ORDER BY keys are permuted")


def _differences(left: list[tuple[Any, ...]], right: list[tuple[Any, ...]], limit: int = 3) -> dict[str, Any]:
    only_left = Counter(left) - Counter(right)
    only_right = Counter(right) - Counter(left)
    return {
        "only_in_original": [_printable(r) for r in list(only_left.elements())[:limit]],
        "only_in_candidate": [_printable(r) for r in list(only_right.elements())[:limit]],
    }


def _printable(row: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for value in row:
        if value is None:
            out.append(None)
        elif value[0] == "num":
            out.append(str(value[1]))
        else:
            out.append(value[1] if isinstance(value[1], (str, bool)) else str(value[1]))
    return out
