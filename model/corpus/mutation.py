"""Free-form expansion (LASER §4.2's LLM mutation): a model asked for a slower query with the same
result, used by the search as one more strategy next to the reverse optimizer's transformations.

The request is rendered by the prompt module the sidecar serves with
(``sidecar.prompting.prompts.slowdown_messages``: the same schema rendering as a rewrite request),
the SQL is taken from the answer by the sidecar's extraction, and what comes out is treated as any
rule's output: parsed, executed and compared with the seed by the verifier, and re-verified before
it is kept. Nothing the model says is trusted.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from model.corpus import structure
from sidecar.backends.base import Backend, Prompt
from sidecar.catalog import Catalog
from sidecar.prompting.extract import extract_sql
from sidecar.prompting.prompts import slowdown_messages


@dataclass
class MutationStats:
    calls: int = 0
    tokens: int = 0
    no_sql: int = 0
    """Answers holding no SQL statement."""
    unparsable: int = 0
    """Statements sqlglot cannot parse (PostgreSQL would then refuse them too, or they are not SQL)."""
    unchanged: int = 0
    """The query given back as it was (after normalization)."""
    proposed: int = 0
    """Variants handed to the search (to be executed and verified there)."""


class ModelMutation:
    """A search strategy backed by a model: ``(tree, catalog) -> a variant or None``, like the
    reverse optimizer's transformations. One completion per call."""

    __name__ = "model_mutation"

    def __init__(self, backend: Backend, temperature: float = 0.8, max_tokens: int = 1024) -> None:
        self.backend = backend
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stats = MutationStats()

    def __call__(self, tree: exp.Expr, catalog: Catalog) -> exp.Expr | None:
        query = tree.sql(dialect="postgres")
        prompt = Prompt(query, catalog, slowdown_messages(query, catalog))
        completion = self.backend.generate([prompt], n=1, temperature=self.temperature,
                                           max_tokens=self.max_tokens)[0]
        self.stats.calls += 1
        if not completion:
            self.stats.no_sql += 1
            return None
        self.stats.tokens += completion[0].tokens
        extraction = extract_sql(completion[0].text)
        if extraction.sql is None:
            self.stats.no_sql += 1
            return None
        try:
            variant = structure.parse(extraction.sql)
        except ValueError:
            self.stats.unparsable += 1
            return None
        if structure.normalized(variant) == structure.normalized(tree):
            self.stats.unchanged += 1
            return None
        self.stats.proposed += 1
        return variant
