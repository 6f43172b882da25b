"""The zero-GPU backend: candidates from the targeted rewrite rules in ``sidecar.rules``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.backends.base import Completion, ModelInfo, Prompt
from sidecar.rules.runner import RuleCandidate, rewrite_candidates
from sidecar.rules.search import SearchCandidate, SearchStats, beam_search


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
                Completion(text=candidate.sql, source="rules:" + "+".join(candidate.rules),
                           details=_details(candidate))
                for candidate in self._candidates(prompt)[: max(n, 0)]
            ]
            for prompt in prompts
        ]

    @staticmethod
    def _candidates(prompt: Prompt) -> Sequence[RuleCandidate | SearchCandidate]:
        """With the planner at hand: the beam search over rule sequences, cheapest estimate first.
        Without: each rule alone, then all fired rules composed."""
        if prompt.cost is not None:
            stats = SearchStats()
            found = beam_search(prompt.query, prompt.catalog, prompt.cost, deadline=prompt.deadline, stats=stats)
            if prompt.search is not None:
                prompt.search.update(kind="beam", candidates=len(found), planned=stats.planned,
                                     unplannable=stats.unplannable, pruned=stats.pruned,
                                     elapsed_ms=round(stats.elapsed_s * 1000.0, 3),
                                     out_of_time=stats.out_of_time)
            return found
        listed = rewrite_candidates(prompt.query, prompt.catalog)
        if prompt.search is not None:
            prompt.search.update(kind="each rule, then all composed", candidates=len(listed))
        return listed

    def info(self) -> ModelInfo:
        from sidecar.rules import RULES

        names = [getattr(rule, "__name__", str(rule)).rsplit(".", 1)[-1] for rule in RULES]
        return ModelInfo(backend=self.name, version=self.version, details={"rules": names})


def _details(candidate: RuleCandidate | SearchCandidate) -> dict[str, Any]:
    details: dict[str, Any] = {"rules": list(candidate.rules)}
    if isinstance(candidate, SearchCandidate):
        details["estimated_cost"] = round(candidate.cost, 2)
    return details
