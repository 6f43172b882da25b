"""Benchmark workloads: a list of queries with stable ids, from files, JSON, or a generator."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchQuery:
    """One query of a workload.

    `id` is unique within the workload and stable across runs (it keys resumed runs and replay
    files); `template` names the template an instance came from ("q17" for "q17_2"), and `params`
    records the substitution values, for provenance.
    """

    id: str
    sql: str
    template: str = ""
    params: dict[str, Any] = field(default_factory=dict)


class WorkloadError(ValueError):
    """A workload file or directory that cannot be read as queries."""


def _strip_comments(text: str) -> str:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


def load_workload(path: Path) -> list[BenchQuery]:
    """Queries from a directory of `.sql` files (id = file stem) or a JSON list of `{id, query}`."""
    if path.is_dir():
        files = sorted(path.glob("*.sql"))
        if not files:
            raise WorkloadError(f"{path} holds no .sql files")
        queries = [BenchQuery(p.stem, _strip_comments(p.read_text()), p.stem) for p in files]
    elif path.is_file():
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path} is not JSON: {exc}") from None
        if not isinstance(entries, list):
            raise WorkloadError(f"{path} must hold a JSON list of {{id, query}}")
        queries = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) \
                    or not isinstance(entry.get("query"), str):
                raise WorkloadError(f"{path}, entry {i}: needs a string 'id' and a string 'query'")
            queries.append(BenchQuery(entry["id"], entry["query"].strip().rstrip(";").strip(),
                                      str(entry.get("template", entry["id"]))))
    else:
        raise WorkloadError(f"no workload at {path}")
    empty = [q.id for q in queries if not q.sql]
    if empty:
        raise WorkloadError(f"{path}: empty queries: {', '.join(empty)}")
    ids = [q.id for q in queries]
    if len(set(ids)) != len(ids):
        raise WorkloadError(f"{path}: query ids repeat")
    return queries
