"""Values for `$n` parameters (normalized text from pg_stat_statements) so both queries can run.

`choose()` gives each parameter one typical value of the column it is compared with, from the
planner's statistics: the most common value for `=`/`<>`/`IN`, the median histogram bound for a
range comparison, otherwise any non-NULL value of the column.

`choose_sets()` gives several distinct parameter sets: a rewrite of a parameterized statement is
only suggested when it is verified on each of them. Sampled executions (from the server log) come
first; the planner's statistics top them up. The values used, and where each came from, are part
of the evidence.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast import ast
from psycopg import sql

from sidecar.verify import relations, tablefacts
from sidecar.verify.session import ReadOnlySession

SAMPLED = "sampled from the server log"
"""The source of a value a caller passed in `given` (a sample of a real execution)."""

_SCAN_ROWS = 10_000
"""Rows a fallback query reads at most when looking for distinct values of a column."""


class ParameterError(Exception):
    """A parameter cannot be given a value from the data."""


@dataclass(frozen=True)
class Chosen:
    value: str | None
    source: str
    """Where the value came from, e.g. "most common value of public.users.country"."""


@dataclass(frozen=True)
class ParameterSet:
    """One value for every `$n` of a statement: parameter number -> the value and its source.

    >>> s = ParameterSet({2: Chosen(None, "given"), 1: Chosen("DE", "most common value of public.users.country")})
    >>> s.plain()
    {1: 'DE', 2: None}
    >>> s.to_json()["$1"]
    {'value': 'DE', 'source': 'most common value of public.users.country'}
    """

    values: dict[int, Chosen]

    def plain(self) -> dict[int, str | None]:
        """Parameter number -> value (None: NULL), in parameter order."""
        return {n: self.values[n].value for n in sorted(self.values)}

    def to_json(self) -> dict[str, dict[str, str | None]]:
        """`{"$1": {"value": ..., "source": ...}, ...}`, in parameter order."""
        return {f"${n}": {"value": c.value, "source": c.source} for n, c in sorted(self.values.items())}

    def key(self) -> tuple[tuple[int, str | None], ...]:
        """What makes two sets the same: their plain values."""
        return tuple(self.plain().items())


# --- pg_stat_statements text --------------------------------------------------------------------

_TYPED_PLACEHOLDER = re.compile(
    r"(?<![\w$.\"])"
    r"(timestamp\s+with(?:out)?\s+time\s+zone|time\s+with(?:out)?\s+time\s+zone"
    r"|timestamptz|timestamp|timetz|time|date|interval)"
    r"(\s+)(\$\d+)(?![\w$])",
    re.IGNORECASE,
)
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][\w\x80-\uffff]*)?\$")


def normalize_placeholders(text: str) -> str:
    """Turn a typed literal whose constant pg_stat_statements replaced (`date $1`) into a cast.

    `date '1995-03-15'` is normalized to `date $1`, which does not parse; `$1::date` does and means
    the same. Only a type keyword directly followed by a placeholder changes, and only outside
    string literals, quoted identifiers and comments; every other byte stays as it was.

    >>> normalize_placeholders("SELECT * FROM t WHERE d >= date $1 AND d < date $1 + interval $2")
    'SELECT * FROM t WHERE d >= $1::date AND d < $1::date + $2::interval'
    >>> normalize_placeholders("SELECT TIMESTAMP WITH TIME ZONE $3, Time $1, timestamptz $10")
    'SELECT $3::TIMESTAMP WITH TIME ZONE, $1::Time, $10::timestamptz'
    >>> normalize_placeholders("SELECT time with time zone $1, timestamp $2")
    'SELECT $1::time with time zone, $2::timestamp'
    >>> normalize_placeholders("SELECT 'date $1', \\"date\\" $1, x.date $2 -- date $3\\n FROM t")
    'SELECT \\'date $1\\', "date" $1, x.date $2 -- date $3\\n FROM t'
    >>> normalize_placeholders("SELECT $$ date $1 $$, E'it\\\\'s date $2', /* date $1 */ updated_date $1")
    "SELECT $$ date $1 $$, E'it\\\\'s date $2', /* date $1 */ updated_date $1"
    >>> normalize_placeholders("SELECT date '2024-01-01', date $12")
    "SELECT date '2024-01-01', $12::date"
    """
    out: list[str] = []
    start = 0  # start of the code (not quoted, not comment) run being collected
    i, n = 0, len(text)

    def flush(end: int) -> None:
        out.append(_TYPED_PLACEHOLDER.sub(lambda m: f"{m.group(3)}::{m.group(1)}", text[start:end]))

    while i < n:
        c = text[i]
        skip_to = -1
        if c == "'":
            escaped = i > 0 and text[i - 1] in "eE"  # E'...' unless the E ends an identifier
            backslashes = escaped and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] in "_$"))
            skip_to = _end_of_string(text, i, backslashes)
        elif c == '"':
            skip_to = _end_of_quoted(text, i, '"')
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            skip_to = n if newline < 0 else newline
        elif text.startswith("/*", i):
            skip_to = _end_of_comment(text, i)
        elif c == "$" and not (i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")):
            tag = _DOLLAR_TAG.match(text, i)
            if tag:
                close = text.find(tag.group(0), tag.end())
                skip_to = n if close < 0 else close + len(tag.group(0))
        if skip_to < 0:
            i += 1
            continue
        flush(i)
        out.append(text[i:skip_to])
        start = i = skip_to
    flush(n)
    return "".join(out)


def _end_of_string(text: str, i: int, backslashes: bool) -> int:
    j = i + 1
    while j < len(text):
        if backslashes and text[j] == "\\":
            j += 2
            continue
        if text[j] == "'":
            if text.startswith("''", j):
                j += 2
                continue
            return j + 1
        j += 1
    return len(text)


def _end_of_quoted(text: str, i: int, quote: str) -> int:
    j = i + 1
    while j < len(text):
        if text[j] == quote:
            if text.startswith(quote * 2, j):
                j += 2
                continue
            return j + 1
        j += 1
    return len(text)


def _end_of_comment(text: str, i: int) -> int:
    depth, j = 0, i
    while j < len(text):
        if text.startswith("/*", j):
            depth += 1
            j += 2
        elif text.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(text)


# --- values from the data -----------------------------------------------------------------------

def choose(session: ReadOnlySession, statement: ast.Node) -> dict[int, Chosen]:
    """A value for every parameter of `statement`; ParameterError names the first one without."""
    numbers = relations.parameter_numbers(statement)
    if not numbers:
        return {}
    candidates = _candidates(session, statement, numbers, want=1)
    chosen: dict[int, Chosen] = {}
    for number in numbers:
        if not candidates[number]:
            raise ParameterError(_no_column(number) + "; give the query with literal values instead")
        chosen[number] = candidates[number][0]
    return chosen


def choose_sets(session: ReadOnlySession, statement: ast.Node,
                given: Sequence[Mapping[int, str | None]] = (), minimum: int = 3,
                maximum: int = 5) -> list[ParameterSet]:
    """Distinct parameter sets for `statement`, at least `minimum` and given ones at most `maximum`.

    * The `given` sets (samples of real executions, e.g. from the server log) come first, in
      order, without duplicates, at most `maximum` of them; their values' source is SAMPLED. A
      value a given set lacks is taken from the statistics as for the generated sets below.
    * While there are fewer than `minimum`, sets are generated: set i gives every parameter that
      is compared with a table column its column's i-th distinct candidate (the most common values
      in order, then histogram bounds across the range: median, quartiles, octiles…, then any
      distinct non-NULL values, read with a bounded query; a range comparison starts with the
      histogram); a parameter compared with no column takes its value from given set i (cycling
      through them). A generated set equal to an earlier one is skipped.

    A statement without parameters has one, empty, set. ParameterError when a parameter has no
    value at all (compared with no column and no given set), or when fewer than `minimum` distinct
    sets can be found. Every query is read-only and bounded.
    """
    if minimum < 1 or maximum < minimum:
        raise ValueError("need 1 <= minimum <= maximum")
    numbers = relations.parameter_numbers(statement)
    if not numbers:
        return [ParameterSet({})]
    samples: list[dict[int, str | None]] = []
    for sample in given:
        plain = {int(n): (None if v is None else str(v)) for n, v in sample.items() if int(n) in numbers}
        if plain not in samples:
            samples.append(plain)
    samples = samples[:maximum]
    want = maximum + len(samples)  # candidates per parameter: enough to get past given duplicates
    candidates = _candidates(session, statement, numbers, want=want)
    for number in numbers:
        if not candidates[number] and not samples:
            raise ParameterError(_no_column(number) + "; give sampled parameter values or the query "
                                 "with literal values instead")

    sets: list[ParameterSet] = []
    seen: set[tuple[tuple[int, str | None], ...]] = set()

    def add(values: dict[int, Chosen]) -> None:
        found = ParameterSet(values)
        if found.key() not in seen:
            seen.add(found.key())
            sets.append(found)

    for index, sample in enumerate(samples, start=1):
        values: dict[int, Chosen] = {}
        for number in numbers:
            if number in sample:
                values[number] = Chosen(sample[number], SAMPLED)
            elif candidates[number]:
                values[number] = candidates[number][0]
            else:
                raise ParameterError(f"given parameter set {index} has no value for ${number}, and "
                                     + _no_column(number))
        add(values)

    rounds = max([len(c) for c in candidates.values()] + [len(samples)])
    for i in range(rounds):
        if len(sets) >= minimum:
            break
        values = {}
        for number in numbers:
            if candidates[number]:
                values[number] = candidates[number][i % len(candidates[number])]
            else:  # no value from the data: every sample has one (checked above)
                values[number] = Chosen(samples[i % len(samples)][number], SAMPLED)
        add(values)

    if len(sets) < minimum:
        counts = ", ".join(
            f"${n}: {len(candidates[n])} distinct value(s) from the data" if candidates[n]
            else f"${n}: only the given value(s)" for n in numbers)
        raise ParameterError(
            f"only {len(sets)} distinct parameter set(s) could be found for "
            f"{', '.join(f'${n}' for n in numbers)} ({counts}); at least {minimum} are needed to verify a "
            "rewrite of a parameterized statement. Hint: sample real executions (e.g. turn on "
            "log_min_duration_statement so the server log records their parameter values) and give "
            "them as parameter sets, or give the query with literal values instead")
    return sets


def _no_column(number: int) -> str:
    return (f"parameter ${number} is not compared with a table column, so no value can be "
            "taken from the data")


def _candidates(session: ReadOnlySession, statement: ast.Node, numbers: list[int],
                want: int) -> dict[int, list[Chosen]]:
    """Up to `want` distinct candidate values per parameter, best first ([]: none from the data)."""
    found = relations.relations(statement)
    out: dict[int, list[Chosen]] = {n: [] for n in numbers}
    with session.transaction() as cur:
        oids = tablefacts.resolve(cur, list(found.tables))
        tables = [tablefacts.load(cur, oid) for oid in dict.fromkeys(o for o in oids.values() if o)]
        aliases = {alias: oids.get(name) for alias, name in found.aliases.items()}
        for number in numbers:
            picked = out[number]
            for comparison in (c for c in found.comparisons if c.parameter == number):
                if len(picked) >= want:
                    break
                place = tablefacts.locate(comparison.column, aliases, tables)
                if place is None:
                    continue
                table = next(t for t in tables if t.oid == place[0])
                values = {c.value for c in picked}
                for chosen in _column_values(cur, table, place[1], comparison.operator not in ("=", "<>"),
                                             want - len(picked), values):
                    picked.append(chosen)
    return out


def _column_values(cur: psycopg.Cursor[Any], table: tablefacts.TableFacts, column: str, ranged: bool,
                   want: int, taken: set[str | None]) -> list[Chosen]:
    """Up to `want` distinct values of one column not in `taken`, the typical one first."""
    label = f"{table.label}.{column}"
    cur.execute(
        "SELECT most_common_vals::text::text[], histogram_bounds::text::text[] FROM pg_catalog.pg_stats"
        " WHERE schemaname = %s AND tablename = %s AND attname = %s LIMIT 1",
        (table.schema, table.name, column),
    )
    row = cur.fetchone()
    common: list[str] = list(row[0] or []) if row else []
    bounds: list[str] = list(row[1] or []) if row else []
    by_frequency = [Chosen(v, f"most common value of {label}" if rank == 1 else
                           f"most common value #{rank} of {label}") for rank, v in enumerate(common, start=1)]
    across = [Chosen(bounds[index], f"{name} histogram bound of {label}") for index, name in _spread(len(bounds))]
    ordered = across + by_frequency if ranged else by_frequency + across
    out: list[Chosen] = []
    for chosen in ordered:
        if len(out) >= want:
            return out
        if chosen.value is not None and chosen.value not in taken:
            taken.add(chosen.value)
            out.append(chosen)
    if len(out) < want:
        # concat() writes a value with its type's output function, as pg_stats does (a boolean is
        # "t", where ::text would give "true"), so the same value is not taken twice.
        cur.execute(sql.SQL("SELECT DISTINCT v FROM (SELECT concat({c}) AS v FROM {t} WHERE {c} IS NOT NULL"
                            " LIMIT {scan}) AS s LIMIT {limit}").format(
            c=sql.Identifier(column), t=table.identifier, scan=sql.Literal(_SCAN_ROWS),
            limit=sql.Literal(want + len(taken))))
        for (value,) in cur.fetchall():
            if len(out) >= want:
                break
            if value not in taken:
                taken.add(value)
                out.append(Chosen(value, f"a value of {label}"))
    return out


def _spread(count: int) -> list[tuple[int, str]]:
    """Histogram positions from the middle outwards: median, quartiles, octiles, … (index, name).

    >>> _spread(101)[:4]
    [(50, 'median'), (25, 'lower-quartile'), (75, 'upper-quartile'), (12, '12th-percentile')]
    >>> [i for i, _ in _spread(3)]
    [1, 0, 2]
    """
    out: list[tuple[int, str]] = []
    used: set[int] = set()
    denominator = 2
    while len(used) < count:
        for numerator in range(1, denominator, 2):
            index = min(count - 1, numerator * count // denominator)
            if index in used:
                continue
            used.add(index)
            percent = 100 * numerator // denominator
            name = {50: "median", 25: "lower-quartile", 75: "upper-quartile"}.get(percent, f"{percent}th-percentile")
            out.append((index, name))
        if denominator > 2 * count:
            for index in range(count):  # the positions left over on a short histogram
                if index not in used:
                    used.add(index)
                    out.append((index, f"{100 * index // max(count - 1, 1)}th-percentile"))
        denominator *= 2
    return out
