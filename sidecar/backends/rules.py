"""The zero-GPU backend: candidates from the targeted rewrite rules in ``sidecar.rules``."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.backends.base import Completion, ModelInfo, Prompt
from sidecar.rules.runner import RuleCandidate, rewrite_candidates
from sidecar.rules.search import SearchCandidate, beam_search


class RulesBackend:
    """Deterministic candidates; ``temperature`` and ``max_tokens`` do not apply.

    >>> from sidecar.catalog import Catalog
    >>> RulesBackend().generate([Prompt("SELECT 1", Catalog())], n=4)
    [[]]
    """

    name = "rules"
    model = ""
    """No model: the candidates come from the rules in sidecar.rules."""

    @property
    def version(self) -> str:
        from importlib.metadata import version

        import sqlglot

        return f"laser-pg {version('laser-pg')}, sqlglot {sqlglot.__version__}"

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int,
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> list[list[Completion]]:
        return [
            [
                Completion(text=candidate.sql, source="rules:" + "+".join(candidate.rules))
                for candidate in self._candidates(prompt)[: max(n, 0)]
            ]
            for prompt in prompts
        ]

    @staticmethod
    def _candidates(prompt: Prompt) -> Sequence[RuleCandidate | SearchCandidate]:
        """With the planner at hand: the beam search over rule sequences, cheapest estimate first.
        Without: each rule alone, then all fired rules composed."""
        if prompt.cost is not None:
            return beam_search(prompt.query, prompt.catalog, prompt.cost, deadline=prompt.deadline)
        return rewrite_candidates(prompt.query, prompt.catalog)

    def info(self) -> ModelInfo:
        from sidecar.rules import RULES

        names = [getattr(rule, "__name__", str(rule)).rsplit(".", 1)[-1] for rule in RULES]
        return ModelInfo(backend=self.name, version=self.version, details={"rules": names})
