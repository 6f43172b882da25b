"""Extraction of the SQL statement from a model's completion.

The prompt asks for one statement in a ```sql fenced block. Models do not always comply, so, in
order: the last fenced block that holds exactly one statement; otherwise the last fenced block as it
is (its syntax error is then fed back to the model); otherwise the last statement of the
plain text (a span starting at a line that begins with SELECT, WITH, VALUES or a parenthesis, cut at
its semicolon, with trailing prose dropped line by line until PostgreSQL's grammar accepts it).
Nothing found is the LASER "extraction fail" outcome. The statement is only parsed here; the guard,
EXPLAIN and the verifier decide everything else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pglast

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_START = re.compile(r"^[ \t]*(?:select|with|values|\()", re.IGNORECASE | re.MULTILINE)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Extraction:
    sql: str | None
    """The statement, without a trailing semicolon; None when the completion holds none."""
    method: str
    """"fenced", "statement" or "none"."""


def extract_sql(completion: str) -> Extraction:
    """The one SQL statement the completion answers with.

    >>> extract_sql("Here it is:\\n```sql\\nSELECT 1;\\n```\\nIt is faster.")
    Extraction(sql='SELECT 1', method='fenced')
    >>> extract_sql("First try:\\n```sql\\nSELECT 1\\n```\\nBetter:\\n```sql\\nSELECT 2\\n```")
    Extraction(sql='SELECT 2', method='fenced')
    >>> extract_sql("The rewrite is\\nWITH t AS (SELECT 1 AS a)\\nSELECT a FROM t;\\nIt avoids a scan.")
    Extraction(sql='WITH t AS (SELECT 1 AS a)\\nSELECT a FROM t', method='statement')
    >>> extract_sql("SELECT a FROM t\\nThis is faster because it scans once.")
    Extraction(sql='SELECT a FROM t', method='statement')
    >>> extract_sql("<think>maybe SELECT 3</think>\\n```sql\\nSELECT 4\\n```")
    Extraction(sql='SELECT 4', method='fenced')
    >>> extract_sql("I cannot improve this query.")
    Extraction(sql=None, method='none')
    >>> extract_sql("```sql\\nSELEC 1\\n```")  # kept: the database's error on it is fed back
    Extraction(sql='SELEC 1', method='fenced')
    """
    text = _THINK.sub("", completion)
    fenced = [body for language, body in _FENCE.findall(text)
              if language.lower() in ("", "sql", "postgresql", "postgres", "pgsql", "psql") and body.strip()]
    for body in reversed(fenced):
        statement = _single_statement(body)
        if statement is not None:
            return Extraction(statement, "fenced")
    if fenced:  # SQL the grammar rejects: PostgreSQL's own error goes back to the model
        return Extraction(fenced[-1].strip().rstrip(";").strip(), "fenced")
    if "```" in text:
        text = _FENCE.sub("\n", text)
    statement = _last_plain_statement(text)
    if statement is not None:
        return Extraction(statement, "statement")
    return Extraction(None, "none")


def _single_statement(text: str) -> str | None:
    """The text as one statement (trailing semicolons removed), or None if it is not exactly one."""
    body = text.strip().rstrip(";").strip()
    if not body:
        return None
    try:
        statements = pglast.split(body)
    except pglast.parser.ParseError:
        return None
    return body if len(statements) == 1 else None


def _last_plain_statement(text: str) -> str | None:
    segments = text.split(";")
    for segment in reversed(segments):
        for start in _START.finditer(segment):
            lines = segment[start.start():].strip().splitlines()
            while lines:
                statement = _single_statement("\n".join(lines))
                if statement is not None:
                    return statement
                lines.pop()
    return None
