"""Model prompts: the rewrite request, the repair request after a DBMS error, the counterexample
feedback after a non-equivalent candidate, and the reverse request that training corpora use
(a slower query with the same result, LASER §4.2's LLM mutation).

The rewrite prompt carries what the source papers give the model: the query; the schema of the
tables it reads (columns, types, NOT NULL, keys, indexes, row estimates — the facts a rewrite's
correctness rests on); execution hints from the original's plan (E3's linearized plan and SPA §3.2's
cardinality flow); and retrieved demonstrations, verified rewrites of similar queries (E3).
Repairs and feedback continue the same conversation (LASER §5.3; SPA's retry with reflection): the
model sees its own answer, then the database's verdict on it.

Everything is plain text in chat turns (:class:`sidecar.backends.base.Message`); each backend renders
the turns with its tokenizer's chat template. Lengths are bounded: the schema lists at most
`MAX_TABLES` tables, the plan `MAX_PLAN_LINES` operators, and a counterexample `MAX_EXAMPLE_ROWS` rows.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.backends.base import Message
from sidecar.catalog import Catalog, Table
from sidecar.prompting.hints import linearize, plan_hints, render_hints

MAX_TABLES = 12
MAX_PLAN_LINES = 40
MAX_HINTS = 8
MAX_EXAMPLE_ROWS = 5
MAX_ERROR_CHARS = 600

SYSTEM = (
    "You rewrite slow PostgreSQL queries into faster queries that are semantically equivalent: on "
    "every database that satisfies the schema's constraints, the rewrite returns the same columns "
    "and the same rows (the same order where the query fixes one), not only on today's data. Prefer "
    "changes PostgreSQL's planner cannot make itself: decorrelate subqueries into joins with "
    "pre-aggregated derived tables, compute repeated subexpressions once, make predicates sargable, "
    "use EXISTS for existence checks. Answer with exactly one SQL statement in a ```sql fenced "
    "block, and nothing after it."
)


@dataclass(frozen=True)
class Example:
    """A retrieved demonstration as the prompt shows it."""

    original_sql: str
    rewritten_sql: str
    speedup: float


def rewrite_messages(query: str, catalog: Catalog, plan: Mapping[str, Any] | None = None,
                     examples: Sequence[Example] = ()) -> tuple[Message, ...]:
    """The first request: system instructions, then schema, plan hints, demonstrations and the query.

    >>> from sidecar.catalog import Column, Table
    >>> orders = Table("public", "orders", (Column("id", "integer", False), Column("note", "text", True)),
    ...                ("id",), row_estimate=500000)
    >>> turns = rewrite_messages("SELECT count(*) FROM orders", Catalog({"public.orders": orders}))
    >>> [t.role for t in turns]
    ['system', 'user']
    >>> print(turns[1].content)
    Schema:
    table public.orders (~500000 rows)
      id integer NOT NULL
      note text
      primary key (id)
    <BLANKLINE>
    Rewrite this query:
    ```sql
    SELECT count(*) FROM orders
    ```
    """
    sections = []
    schema = render_schema(catalog)
    if schema:
        sections.append("Schema:\n" + schema)
    plan_text = render_plan(plan, catalog)
    if plan_text:
        sections.append(plan_text)
    for i, example in enumerate(examples, start=1):
        sections.append(
            f"Example {i}, a verified rewrite on this database ({example.speedup:.1f}x faster):\n"
            f"Slow:\n```sql\n{example.original_sql.strip()}\n```\n"
            f"Fast:\n```sql\n{example.rewritten_sql.strip()}\n```"
        )
    sections.append(f"Rewrite this query:\n```sql\n{query.strip()}\n```")
    return (Message("system", SYSTEM), Message("user", "\n\n".join(sections)))


SLOWDOWN_SYSTEM = (
    "You write training data for a PostgreSQL query optimizer. Rewrite the given query into one that "
    "returns exactly the same result on every database that satisfies the schema's constraints (same "
    "columns with the same names, in the same order, and the same rows), but that PostgreSQL runs more "
    "slowly: the inefficient SQL people really write, such as correlated subqueries instead of joins, "
    "counts instead of EXISTS, functions around filtered columns, CTEs that keep predicates from being "
    "pushed down, aggregates computed after a join instead of before. Answer with exactly one SQL "
    "statement in a ```sql fenced block, and nothing after it."
)


def slowdown_messages(query: str, catalog: Catalog) -> tuple[Message, ...]:
    """The reverse request, for building training corpora (LASER §4.2's LLM mutation): a slower
    query with the same result. The schema is rendered as for a rewrite, so the model sees the
    same facts in the same form in both directions.

    >>> turns = slowdown_messages("SELECT 1", Catalog({}))
    >>> [t.role for t in turns], turns[1].content.splitlines()[0]
    (['system', 'user'], 'Make this query slower without changing its result:')
    """
    sections = []
    schema = render_schema(catalog)
    if schema:
        sections.append("Schema:\n" + schema)
    sections.append(f"Make this query slower without changing its result:\n```sql\n{query.strip()}\n```")
    return (Message("system", SLOWDOWN_SYSTEM), Message("user", "\n\n".join(sections)))


def repair_messages(conversation: Sequence[Message], answer: str, error: str) -> tuple[Message, ...]:
    """The conversation so far, the model's answer, and the database's error on it (LASER §5.3).

    >>> turns = repair_messages([Message("user", "q")], "SELEC 1", 'syntax error at or near "SELEC"')
    >>> [t.role for t in turns]
    ['user', 'assistant', 'user']
    >>> print(turns[-1].content)
    PostgreSQL could not run your query:
    ERROR: syntax error at or near "SELEC"
    Correct it. Answer with the whole corrected statement in a ```sql fenced block.
    """
    error = _clip(error.strip(), MAX_ERROR_CHARS)
    feedback = (f"PostgreSQL could not run your query:\nERROR: {error}\n"
                "Correct it. Answer with the whole corrected statement in a ```sql fenced block.")
    return (*conversation, Message("assistant", answer), Message("user", feedback))


def extraction_messages(conversation: Sequence[Message], answer: str) -> tuple[Message, ...]:
    """The model's answer held no SQL statement: ask again for the format."""
    feedback = "Your answer contains no SQL statement. Answer with one SQL statement in a ```sql fenced block."
    return (*conversation, Message("assistant", answer), Message("user", feedback))


def counterexample_messages(conversation: Sequence[Message], answer: str,
                            counterexample: Mapping[str, Any], detail: str = "") -> tuple[Message, ...]:
    """The verifier's counterexample to the model's answer: where the results differ, and how.

    >>> cx = {"instance": "nulls", "difference": "row counts differ (3 vs 2)",
    ...       "examples": {"only_in_original": [[1, None]], "only_in_candidate": []}}
    >>> print(counterexample_messages([], "SELECT 1", cx)[-1].content)
    Your query runs but is not equivalent to the original. On a copy of the tables with nulls, the results differ: row
    counts differ (3 vs 2).
    Rows only the original returns: [1, null]
    Write a rewrite that returns exactly the original's rows on every database state the schema allows. Answer with one
    SQL statement in a ```sql fenced block.
    """
    instance = str(counterexample.get("instance") or "")
    where = "On the live data" if instance in ("", "live data") else f"On a copy of the tables with {instance}"
    difference = str(counterexample.get("difference") or detail or "the results differ")
    lines = [f"Your query runs but is not equivalent to the original. {where}, the results differ: {difference}."]
    examples = counterexample.get("examples") or {}
    if isinstance(examples, Mapping):
        for key, label in (("only_in_original", "Rows only the original returns"),
                           ("only_in_candidate", "Rows only your query returns")):
            rows = list(examples.get(key) or [])[:MAX_EXAMPLE_ROWS]
            if rows:
                lines.append(f"{label}: " + "; ".join(_row(r) for r in rows))
    tables = counterexample.get("tables")
    if isinstance(tables, Mapping) and tables:
        lines.append("The tables of that instance:")
        for name, table in list(tables.items())[:MAX_TABLES]:
            if not isinstance(table, Mapping):
                continue
            rows = list(table.get("rows") or [])[:MAX_EXAMPLE_ROWS]
            shown = "; ".join(_row(r) for r in rows) if rows else "(empty)"
            more = int(table.get("row_count") or 0) - len(rows)
            lines.append(_clip(f"- {name} ({', '.join(map(str, table.get('columns') or []))}): {shown}"
                               + (f"; ... {more} more rows" if more > 0 else ""), 400))
    lines.append("Write a rewrite that returns exactly the original's rows on every database state the schema "
                 "allows. Answer with one SQL statement in a ```sql fenced block.")
    return (*conversation, Message("assistant", answer), Message("user", "\n".join(lines)))


def render_schema(catalog: Catalog) -> str:
    """The referenced tables, one block each: columns with types and NOT NULL, keys, indexes, size."""
    blocks = [_table_block(table) for _, table in sorted(catalog.tables.items())[:MAX_TABLES]]
    hidden = len(catalog.tables) - MAX_TABLES
    if hidden > 0:
        blocks.append(f"... {hidden} more tables")
    return "\n".join(blocks)


def render_plan(plan: Mapping[str, Any] | None, catalog: Catalog) -> str:
    """E3's linearized plan and SPA's cardinality flow for the original (planner estimates)."""
    if not plan:
        return ""
    rows = {table.name: float(table.row_estimate) for table in catalog.tables.values() if table.row_estimate}
    parts = ["Plan of the query (EXPLAIN):\n" + linearize(dict(plan), max_lines=MAX_PLAN_LINES)]
    hints = render_hints(plan_hints(dict(plan), max_items=MAX_HINTS, table_rows=rows))
    if hints:
        parts.append(hints)
    return "\n\n".join(parts)


def _table_block(table: Table) -> str:
    size = f" (~{table.row_estimate} rows)" if table.row_estimate else ""
    lines = [f"table {table.schema}.{table.name}{size}"]
    lines += [f"  {c.name} {c.data_type}{'' if c.nullable else ' NOT NULL'}" for c in table.columns]
    if table.primary_key:
        lines.append(f"  primary key ({', '.join(table.primary_key)})")
    for key in table.unique_keys:
        if key != table.primary_key:
            lines.append(f"  unique ({', '.join(key)})")
    for index in table.indexes:
        if index != table.primary_key and index not in table.unique_keys:
            lines.append(f"  index ({', '.join(index)})")
    return "\n".join(lines)


def _row(row: Any) -> str:
    return json.dumps(row, default=str) if isinstance(row, (list, tuple)) else str(row)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
