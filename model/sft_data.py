"""Training prompts from a SQL-MCTS corpus: the sidecar's own rewrite prompt for each slow query,
for SFT (LASER §5.1, with the fast seed as the target) and for SQL-GRPO (§5.2, with the slow
query as the original its rollouts are verified against).

The prompt is rendered by ``sidecar.prompting.prompts.rewrite_messages``, the function the sidecar
serves with, from the same facts: with a database (``dsn``) the live catalog and the slow query's
EXPLAIN plan, exactly what a request would show; without one, the corpus's schema manifest and no
plan (the served prompt will then carry a plan section the model never saw in training; say
``dsn`` where the database is at hand). The target is the seed in a ```sql block, optionally
preceded by a rationale from the transformation path (``model.rationale``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from model.rationale import rationale
from model.sft import Example
from sidecar.backends.base import Message
from sidecar.catalog import Catalog, Column, Table, load_catalog
from sidecar.prompting.prompts import rewrite_messages
from sidecar.verify import ReadOnlySession, guard


def catalog_from_manifest(manifest: dict[str, Any], tables: Iterable[tuple[str | None, str]]) -> Catalog:
    """The catalog of ``tables`` ((schema or None, name) as the guard lists them) from a corpus's
    schema manifest, as ``load_catalog`` would have read it; unknown tables are left out.

    >>> manifest = {"tables": {"public.t": {"columns": [["id", "integer", False]], "primary_key": ["id"],
    ...             "unique_keys": [["id"]], "indexes": [["id"]], "rows": 10}}}
    >>> catalog_from_manifest(manifest, [(None, "t"), ("x", "missing")]).tables["public.t"].row_estimate
    10
    """
    found: dict[str, Table] = {}
    for schema, name in tables:
        key = f"{schema or 'public'}.{name}".lower()
        facts = manifest["tables"].get(key)
        if facts is None:
            continue
        found[key] = Table(key.split(".", 1)[0], key.split(".", 1)[1],
                           tuple(Column(c[0], c[1], bool(c[2])) for c in facts["columns"]),
                           tuple(facts["primary_key"]), tuple(tuple(k) for k in facts["unique_keys"]),
                           tuple(tuple(i) for i in facts["indexes"]), int(facts["rows"]))
    return Catalog(found)


def target(seed_sql: str, path: Iterable[str], with_rationale: bool) -> str:
    """The completion: the fast query in a fenced block, after a rationale when asked.

    >>> print(target("SELECT 1", ["materialize_ctes"], with_rationale=False))
    ```sql
    SELECT 1
    ```
    """
    block = f"```sql\n{seed_sql.strip()}\n```"
    if not with_rationale:
        return block
    text = rationale(tuple(path))
    return f"{text}\n\n{block}" if text else block


class PromptRenderer:
    """The sidecar's rewrite prompt for any query of the corpus's database: from the live catalog
    and the query's EXPLAIN plan when ``dsn`` is given (one read-only session, kept until
    ``close``), otherwise from the schema ``manifest`` without a plan. Used for the corpus's slow
    queries, and by SQL-GRPO's self-improvement for the slow rewrites it mines (SPA §3.6)."""

    def __init__(self, manifest: dict[str, Any], dsn: str | None = None) -> None:
        self.manifest = manifest
        self.session = ReadOnlySession.connect(dsn, None, statement_timeout_ms=30_000) if dsn is not None else None

    @classmethod
    def for_corpus(cls, corpus: Path, dsn: str | None = None) -> PromptRenderer:
        manifest_path = corpus.with_name(corpus.name + ".schema.json")
        if dsn is None and not manifest_path.is_file():
            raise ValueError(f"{manifest_path} is missing: give --dsn, or keep the manifest beside the corpus")
        return cls(json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"tables": {}}, dsn)

    def render(self, sql: str) -> tuple[Message, ...]:
        """Raises GuardError for a statement the sidecar would not take either."""
        statement = guard(sql)
        plan = None
        if self.session is not None:
            catalog = load_catalog(self.session.connection, list(statement.tables))
            plan, _ = self.session.explain(statement.text)
        else:
            catalog = catalog_from_manifest(self.manifest, statement.tables)
        return rewrite_messages(statement.text, catalog, plan)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def __enter__(self) -> PromptRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def corpus_prompts(corpus: Path, split: str | None = "train", dsn: str | None = None
                   ) -> list[tuple[tuple[Message, ...], dict[str, Any]]]:
    """The sidecar's rewrite prompt for the slow query of every pair of ``corpus`` (those of
    ``split``; None: every pair), with the pair itself."""
    rows = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if split is None or r.get("split") == split]
    with PromptRenderer.for_corpus(corpus, dsn) as renderer:
        return [(renderer.render(row["slow_sql"]), row) for row in rows]


def corpus_examples(corpus: Path, split: str | None = "train", with_rationale: bool = False,
                    dsn: str | None = None) -> list[Example]:
    """One SFT example per pair of ``corpus`` (those of ``split``; None: every pair)."""
    return [(messages, target(row["seed_sql"], row["path"], with_rationale))
            for messages, row in corpus_prompts(corpus, split, dsn)]
