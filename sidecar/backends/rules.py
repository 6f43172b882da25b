"""The zero-GPU backend: candidates from the targeted rewrite rules in ``sidecar.rules``.

With the planner at hand (:meth:`RulesBackend.search` with a :class:`Planner`), the candidates come
from the beam search over rule sequences, ranked by the planner's estimates; rules that need row
estimates (explicit_join_order) get them through the same planner. Without one (the generic
``generate`` of the Backend interface), each rule alone, then all fired rules composed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.backends.base import Completion, ModelInfo, Prompt, completion_counts
from sidecar.catalog import Catalog
from sidecar.rules.explicit_join_order import with_scan_estimates
from sidecar.rules.runner import RuleCandidate, rewrite_candidates
from sidecar.rules.search import SearchCandidate, SearchStats, beam_search


class Planner(Protocol):
    """The planner's estimates for SQL texts, as the caller's session sees them (EXPLAIN, never
    executing); None when PostgreSQL cannot plan the text."""

    def cost(self, sql: str) -> float | None: ...

    def rows(self, sql: str) -> float | None: ...


@dataclass(frozen=True)
class SearchReport:
    """What the rules' search did, for the evidence."""

    kind: str
    """"beam" (ranked by the planner) or "each rule, then all composed" (no planner)."""
    candidates: int
    planned: int | None = None
    """Candidates EXPLAINed."""
    unplannable: int | None = None
    pruned: int | None = None
    """Deeper candidates the estimate did not favour over their parent."""
    elapsed_ms: float | None = None
    out_of_time: bool | None = None
    """The deadline cut the search short."""
    declined: dict[str, str] | None = None
    """Rule → why it left a pattern it recognised in the query alone."""

    def to_json(self) -> dict[str, Any]:
        fields = {"kind": self.kind, "candidates": self.candidates, "planned": self.planned,
                  "unplannable": self.unplannable, "pruned": self.pruned, "elapsed_ms": self.elapsed_ms,
                  "out_of_time": self.out_of_time, "declined": self.declined or None}
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class RuleSearch:
    candidates: Sequence[RuleCandidate | SearchCandidate]
    """Cheapest estimate first with a planner; in registry order without one."""
    report: SearchReport


class RulesBackend:
    """Deterministic candidates; ``temperature`` and ``max_tokens`` do not apply.

    >>> RulesBackend().generate([Prompt("SELECT 1", Catalog())], n=4)
    [[]]
    """

    name = "rules"
    model = ""
    """No model: the candidates come from the rules in sidecar.rules."""

    @property
    def version(self) -> str:
        from importlib.metadata import version

        return f"laser-pg {version('laser-pg')}, sqlglot {version('sqlglot')}"

    def search(self, query: str, catalog: Catalog, planner: Planner | None = None,
               deadline: float | None = None) -> RuleSearch:
        """The rules' candidates for `query`; with a `planner`, the beam search, which stops
        exploring at `deadline` (``time.monotonic()``)."""
        if planner is None:
            listed = rewrite_candidates(query, catalog)
            return RuleSearch(listed, SearchReport(kind="each rule, then all composed", candidates=len(listed)))
        catalog = with_scan_estimates(query, catalog, planner.rows)
        stats = SearchStats()
        found = beam_search(query, catalog, planner.cost, deadline=deadline, stats=stats)
        return RuleSearch(found, SearchReport(
            kind="beam", candidates=len(found), planned=stats.planned, unplannable=stats.unplannable,
            pruned=stats.pruned, elapsed_ms=round(stats.elapsed_s * 1000.0, 3), out_of_time=stats.out_of_time,
            declined=dict(stats.declined)))

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int | Sequence[int],
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> list[list[Completion]]:
        counts = completion_counts(n, len(prompts))
        return [[completion(candidate) for candidate in self.search(prompt.query, prompt.catalog).candidates[:count]]
                for prompt, count in zip(prompts, counts, strict=True)]

    def info(self) -> ModelInfo:
        from sidecar.rules import RULES

        names = [getattr(rule, "__name__", str(rule)).rsplit(".", 1)[-1] for rule in RULES]
        return ModelInfo(backend=self.name, version=self.version, details={"rules": names})


def completion(candidate: RuleCandidate | SearchCandidate) -> Completion:
    """A rules candidate as a completion: its SQL, its source, and how it was found."""
    details: dict[str, Any] = {"rules": list(candidate.rules)}
    if isinstance(candidate, SearchCandidate):
        details["estimated_cost"] = round(candidate.cost, 2)
    return Completion(text=candidate.sql, source="rules:" + "+".join(candidate.rules), details=details)
