"""Fixture files of rewrite pairs (rules and slowdowns): blocks of a title, an input statement and
the expected statement or ``-- expect: no rewrite``."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NO_REWRITE = "-- expect: no rewrite"


@dataclass(frozen=True)
class RuleCase:
    rule: str
    title: str
    input_sql: str
    expected_sql: str | None
    """None: the rule must not fire."""


def _statements(lines: list[str]) -> Iterator[str]:
    buffer: list[str] = []
    for line in lines:
        buffer.append(line)
        if line.rstrip().endswith(";"):
            yield "\n".join(buffer).strip()
            buffer = []
    if buffer:
        raise ValueError(f"statement without a terminating ';': {' '.join(buffer)!r}")


def parse_fixture(path: Path) -> list[RuleCase]:
    """Blocks separated by blank lines: ``-- title:``, input statement, expected statement or
    ``-- expect: no rewrite``."""
    cases: list[RuleCase] = []
    for block in path.read_text().split("\n\n"):
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        if not lines[0].startswith("-- title:"):
            raise ValueError(f"{path.name}: block does not start with '-- title:': {lines[0]!r}")
        title = lines[0].removeprefix("-- title:").strip()
        body = lines[1:]
        expect_none = bool(body) and body[-1].strip() == NO_REWRITE
        statements = list(_statements(body[:-1] if expect_none else body))
        if len(statements) != (1 if expect_none else 2):
            raise ValueError(f"{path.name}: {title!r} needs an input and an expected statement")
        cases.append(RuleCase(path.stem, title, statements[0], None if expect_none else statements[1]))
    return cases
