"""The environment's tasks: the seed environment's five anti-pattern tasks rebuilt on the demo
database, and task files (one task a line, or a corpus written by `laser corpus`).

A task is a slow query and what the agent is told about it. It never carries a known answer: the
reward comes from verifying whatever the agent submits against the task's query, so a corpus
row's fast `seed_sql` is read past, not shown. Every task's query must be one statement the
verifier's guard admits (read-only); a file with anything else is refused as a whole, with the
line that is wrong.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.verify.guard import GuardError, guard

DIALECT = "postgresql"
DEFAULT_MAX_STEPS = 4
MAX_STEPS_LIMIT = 100

_KEEP_RESULT = ("The rewrite must return exactly the original's result (the same columns, in the same "
                "order, and the same rows) on every database the schema allows, not only on today's data; "
                "it is verified by execution and then timed.")


class TaskFileError(ValueError):
    """A task file cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Task:
    """One slow query to rewrite: the seed's task fields, without its schema (read live)."""

    task_id: str
    sql_query: str
    task_name: str = ""
    task_description: str = ""
    difficulty: str = "medium"
    max_steps: int = DEFAULT_MAX_STEPS
    """Submissions per episode."""

    def __post_init__(self) -> None:
        if not self.task_id.strip():
            raise ValueError("task_id must not be empty")
        if not 1 <= self.max_steps <= MAX_STEPS_LIMIT:
            raise ValueError(f"max_steps must be between 1 and {MAX_STEPS_LIMIT}; got {self.max_steps}")
        try:
            guard(self.sql_query)
        except GuardError as exc:
            raise ValueError(f"task {self.task_id!r}: its sql_query is not one read-only query: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """The task as `GET /tasks` lists it (schema_info is added by the environment).

        >>> DEMO_TASKS[0].to_json()["task_id"]
        'task_1_basic_antipatterns'
        """
        return {"task_id": self.task_id, "task_name": self.task_name or self.task_id,
                "task_description": self.task_description, "sql_query": self.sql_query, "dialect": DIALECT,
                "difficulty": self.difficulty, "max_steps": self.max_steps}


# -- the seed environment's five tasks, on the demo database (laser/demo.py) ----------------------

DEMO_TASKS: tuple[Task, ...] = (
    Task(
        task_id="task_1_basic_antipatterns",
        task_name="Basic SQL Anti-pattern Detection",
        task_description=(
            "The query filters 500,000 orders with a CAST on the indexed user_id column and a function "
            "(EXTRACT) around the indexed created_at column; neither predicate can use an index, so every "
            "row is read. Make the predicates sargable. " + _KEEP_RESULT),
        difficulty="easy",
        max_steps=3,
        sql_query=(
            "SELECT *\n"
            "FROM orders\n"
            "WHERE CAST(user_id AS text) = '5000'\n"
            "  AND EXTRACT(YEAR FROM created_at) = 2024"),
    ),
    Task(
        task_id="task_2_correlated_subqueries",
        task_name="N+1 Correlated Subquery Elimination",
        task_description=(
            "Three correlated scalar subqueries read the orders of each of about 1,000 users, one lookup "
            "per user and subquery (the N+1 pattern). Compute the three aggregates in one pass over the "
            "users' orders. " + _KEEP_RESULT),
        difficulty="medium",
        max_steps=4,
        sql_query=(
            "SELECT u.id,\n"
            "       u.email,\n"
            "       (SELECT count(*) FROM orders AS o\n"
            "        WHERE o.user_id = u.id AND o.status = 'delivered') AS delivered_orders,\n"
            "       (SELECT sum(o.amount) FROM orders AS o\n"
            "        WHERE o.user_id = u.id AND o.created_at >= TIMESTAMP '2024-01-01') AS spend_since_2024,\n"
            "       (SELECT max(o.amount) FROM orders AS o WHERE o.user_id = u.id) AS largest_order\n"
            "FROM users AS u\n"
            "WHERE u.country = 'DE'"),
    ),
    Task(
        task_id="task_3_wildcard_scan",
        task_name="Wildcard LIKE & Non-sargable Filter",
        task_description=(
            "Leading-wildcard LIKE patterns (one of them redundant) cannot use a B-tree index, and the only "
            "selective predicate wraps the indexed created_at column of the 1,000,000-row events table in "
            "functions, so the whole table is scanned. Make the selective predicate sargable and drop the "
            "redundant pattern. " + _KEEP_RESULT),
        difficulty="medium-hard",
        max_steps=4,
        sql_query=(
            "SELECT e.id, e.user_id, e.page, e.created_at\n"
            "FROM events AS e\n"
            "WHERE (e.page LIKE '%checkout%' OR e.page LIKE '%checkout/step%')\n"
            "  AND date_trunc('day', e.created_at AT TIME ZONE 'UTC') = TIMESTAMP '2024-02-29'"),
    ),
    Task(
        task_id="task_4_implicit_join",
        task_name="Implicit Cross Join & Scalar Subquery Elimination",
        task_description=(
            "Comma-separated FROM (implicit join syntax) and the same correlated scalar subquery, a "
            "product's average order amount, written twice and evaluated for every recent order in the "
            "SELECT list and again in WHERE. Use explicit joins and compute each product's average once. "
            + _KEEP_RESULT),
        difficulty="hard",
        max_steps=5,
        sql_query=(
            "SELECT o.id,\n"
            "       u.email,\n"
            "       p.name,\n"
            "       o.amount,\n"
            "       (SELECT round(avg(o2.amount), 2) FROM orders AS o2\n"
            "        WHERE o2.product_id = o.product_id) AS product_avg\n"
            "FROM orders AS o, users AS u, products AS p\n"
            "WHERE u.id = o.user_id\n"
            "  AND p.id = o.product_id\n"
            "  AND o.created_at >= TIMESTAMP '2024-12-28'\n"
            "  AND o.amount > 1.5 * (SELECT round(avg(o2.amount), 2) FROM orders AS o2\n"
            "                        WHERE o2.product_id = o.product_id)"),
    ),
    Task(
        task_id="task_5_window_functions",
        task_name="Window Function & Full-Scan Audit",
        task_description=(
            "Five window aggregates over a year of events (about 500,000 rows) joined with users, every "
            "joined row sorted and kept until a DISTINCT removes the duplicates the windows created. "
            "Aggregate once per user before the join instead. " + _KEEP_RESULT),
        difficulty="expert",
        max_steps=5,
        sql_query=(
            "SELECT DISTINCT e.user_id,\n"
            "       u.email,\n"
            "       count(*) OVER (PARTITION BY e.user_id) AS events,\n"
            "       count(*) FILTER (WHERE e.event_type = 'purchase') OVER (PARTITION BY e.user_id) AS purchases,\n"
            "       count(e.referrer) OVER (PARTITION BY e.user_id) AS referred_events,\n"
            "       min(e.created_at) OVER (PARTITION BY e.user_id) AS first_seen,\n"
            "       max(e.created_at) OVER (PARTITION BY e.user_id) AS last_seen\n"
            "FROM events AS e\n"
            "JOIN users AS u ON u.id = e.user_id\n"
            "WHERE e.created_at >= TIMESTAMPTZ '2024-01-01 00:00:00+00'\n"
            "  AND e.created_at < TIMESTAMPTZ '2025-01-01 00:00:00+00'"),
    ),
)


# -- task files ---------------------------------------------------------------------------------

def load_tasks(path: Path) -> list[Task]:
    """The tasks of a JSONL file: one task a line (at least `task_id` and `sql_query`; optional
    `task_name`, `task_description`, `difficulty`, `max_steps`), or a corpus from `laser corpus`
    (a line per pair, with `slow_sql`): each pair's slow query becomes a task. Other keys are
    ignored. Raises TaskFileError, naming the line, for anything that cannot be used.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"cannot read the task file {path}: {exc}") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TaskFileError(f"{path}:{number}: a line must be a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    if not rows:
        raise TaskFileError(f"{path} holds no tasks")
    corpus = "slow_sql" in rows[0][1]
    tasks = [_corpus_task(path, number, row) if corpus else _file_task(path, number, row) for number, row in rows]
    _check_unique(path, zip((n for n, _ in rows), tasks, strict=True))
    return tasks


def _file_task(path: Path, number: int, row: dict[str, Any]) -> Task:
    where = f"{path}:{number}"
    if "slow_sql" in row:
        raise TaskFileError(f"{where}: a corpus pair among tasks; a file holds tasks or a corpus, not both")
    task_id = _text(row, "task_id", where, required=True)
    sql_query = _text(row, "sql_query", where, required=True)
    difficulty = _text(row, "difficulty", where) or "medium"
    max_steps = row.get("max_steps", DEFAULT_MAX_STEPS)
    if isinstance(max_steps, bool) or not isinstance(max_steps, int):
        raise TaskFileError(f"{where}: max_steps must be an integer, got {max_steps!r}")
    return _task(where, task_id=task_id, sql_query=sql_query, task_name=_text(row, "task_name", where),
                 task_description=_text(row, "task_description", where), difficulty=difficulty,
                 max_steps=max_steps)


def _corpus_task(path: Path, number: int, row: dict[str, Any]) -> Task:
    where = f"{path}:{number}"
    if "slow_sql" not in row:
        raise TaskFileError(f"{where}: no slow_sql; the first line made this a corpus file, so every line "
                            "must be a corpus pair")
    slow_sql = _text(row, "slow_sql", where, required=True)
    path_steps = row.get("path") or []
    if not isinstance(path_steps, list) or not all(isinstance(step, str) for step in path_steps):
        raise TaskFileError(f"{where}: path must be a list of transformation names")
    seed_name = str(row.get("seed_name") or "pair")
    made_by = f" It was made slow by: {', '.join(path_steps)}." if path_steps else ""
    return _task(where, task_id=f"corpus_{number}", sql_query=slow_sql,
                 task_name=f"Corpus pair {number} ({seed_name})",
                 task_description=f"A slow query from a SQL-MCTS corpus ({path.name}).{made_by} Rewrite it to run "
                                  f"faster. {_KEEP_RESULT}",
                 difficulty=corpus_difficulty(len(path_steps)))


def corpus_difficulty(steps: int) -> str:
    """A corpus pair's difficulty from the number of transformations that made it slow.

    >>> [corpus_difficulty(n) for n in (0, 1, 2, 3, 4, 7)]
    ['easy', 'easy', 'medium', 'hard', 'expert', 'expert']
    """
    return ("easy", "easy", "medium", "hard")[steps] if steps < 4 else "expert"


def _task(where: str, **fields: Any) -> Task:
    try:
        return Task(**fields)
    except ValueError as exc:
        raise TaskFileError(f"{where}: {exc}") from None


def _text(row: dict[str, Any], key: str, where: str, required: bool = False) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise TaskFileError(f"{where}: {key} is missing")
        return ""
    if not isinstance(value, str):
        raise TaskFileError(f"{where}: {key} must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise TaskFileError(f"{where}: {key} is empty")
    return value


def _check_unique(path: Path, numbered: Iterable[tuple[int, Task]]) -> None:
    seen: dict[str, int] = {}
    for number, task in numbered:
        if task.task_id in seen:
            raise TaskFileError(f"{path}:{number}: task_id {task.task_id!r} is already used on line "
                                f"{seen[task.task_id]}")
        seen[task.task_id] = number


def task_index(tasks: Sequence[Task]) -> dict[str, Task]:
    """The tasks by id, in their order; ValueError on an empty list or a repeated id.

    >>> list(task_index(DEMO_TASKS))[:2]
    ['task_1_basic_antipatterns', 'task_2_correlated_subqueries']
    """
    if not tasks:
        raise ValueError("an environment needs at least one task")
    index: dict[str, Task] = {}
    for task in tasks:
        if task.task_id in index:
            raise ValueError(f"task_id {task.task_id!r} is used twice")
        index[task.task_id] = task
    return index
