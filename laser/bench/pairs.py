"""SQL-pair files (sqlglot's fixture habit): an original and a rewrite side by side, with a title.

    -- case: not_in_vs_not_exists_nullable
    -- why: NOT IN yields no rows when the subquery returns a NULL
    -- expect: not_equivalent
    -- base: identical
    SELECT ...;
    SELECT ...;

`expect` is `equivalent`, `not_equivalent` or `shape_mismatch`; `base` says whether the two return
identical rows on the base data. Statements may span lines and end with `;` at a line's end.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EXPECTATIONS = frozenset({"equivalent", "not_equivalent", "shape_mismatch"})


@dataclass(frozen=True)
class Pair:
    name: str
    why: str
    expect: str
    base: str
    original: str
    candidate: str


class PairFileError(ValueError):
    """A pair file does not follow the format."""


def parse_pairs(text: str, source: str = "<text>") -> list[Pair]:
    """Parse pair-file text.

    >>> p = parse_pairs("-- case: a\\n-- why: w\\n-- expect: equivalent\\nSELECT 1\\n  AS x;\\nSELECT 1 AS x;\\n")
    >>> p[0].name, p[0].original, p[0].candidate
    ('a', 'SELECT 1\\n  AS x', 'SELECT 1 AS x')
    >>> try:
    ...     parse_pairs("-- case: a\\n-- why: w\\n-- expect: maybe\\nSELECT 1;\\nSELECT 2;\\n")
    ... except PairFileError as exc:
    ...     print(exc)
    <text>: case 'a': expect must be one of equivalent, not_equivalent, shape_mismatch
    """
    pairs: list[Pair] = []
    for block in re.split(r"\n\s*\n(?=-- case:)", text.strip()):
        headers: dict[str, str] = {}
        body: list[str] = []
        for line in block.strip().splitlines():
            match = re.match(r"--\s*(case|why|expect|base):\s*(.*)$", line)
            if match and not body:
                headers[match.group(1)] = match.group(2).strip()
            else:
                body.append(line)
        name = headers.get("case", "?")
        if not {"case", "why", "expect"} <= set(headers):
            raise PairFileError(f"{source}: case {name!r}: needs case, why and expect headers")
        if headers["expect"] not in EXPECTATIONS:
            raise PairFileError(f"{source}: case {name!r}: expect must be one of {', '.join(sorted(EXPECTATIONS))}")
        statements = [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", "\n".join(body)) if s.strip()]
        if len(statements) != 2:
            raise PairFileError(f"{source}: case {name!r}: needs exactly two statements, found {len(statements)}")
        pairs.append(Pair(name, headers["why"], headers["expect"], headers.get("base", ""),
                          statements[0], statements[1]))
    names = [p.name for p in pairs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise PairFileError(f"{source}: duplicate case names: {', '.join(duplicated)}")
    return pairs


def load_pairs(path: Path) -> list[Pair]:
    return parse_pairs(path.read_text(), path.name)
