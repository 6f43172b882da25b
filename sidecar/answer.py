"""The last step of a request: every verified attempt in, the best one chosen, the answer and its
evidence document out (the JSON `laser_rewrite_evidence` returns and the advisor stores)."""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import pglast

from sidecar.verify import Outcome, OutcomeStatus

IMPROVED = "improved"
NO_IMPROVEMENT = "no_verified_improvement"


@dataclass(frozen=True)
class Attempt:
    """One candidate and the verifier's outcome for it."""

    sql: str
    source: str
    """Who wrote it: ``rules:<rule>+<rule>`` or ``<backend>:<model>``."""
    outcome: Outcome
    generation: dict[str, Any] | None = None
    """How it was found, as a JSON document: for a model's candidate its draft (kind, round, parent,
    tokens, what was wrong with it); for a rules candidate its rule sequence and the planner's estimate
    that ranked it."""

    def to_json(self) -> dict[str, Any]:
        out = {"source": self.source, "sql": self.sql, **self.outcome.to_json()}
        if self.generation is not None:
            out["generation"] = self.generation
        return out


def best(attempts: list[Attempt]) -> Attempt | None:
    """The fastest attempt verified faster, or None when none was."""
    winners = [a for a in attempts if a.outcome.status is OutcomeStatus.FASTER]
    return max(winners, key=lambda a: a.outcome.speedup) if winners else None


def message(chosen: Attempt | None, attempts: list[Attempt], parameter_sets: int, cap_ms: int,
            backend: str, refused: list[str]) -> str:
    """One sentence for the caller: what was verified, or why nothing was."""
    if chosen is not None:
        outcome, evidence = chosen.outcome, chosen.outcome.evidence
        if evidence.original_timeouts_while_timed:
            return (f"verified equivalent and at least {outcome.speedup:.1f}x faster ({chosen.source}); the original "
                    f"hit the {cap_ms / 1000:.0f} s cap in some of its timed runs, counted at the cap")
        if evidence.speedup_is_lower_bound:
            return (f"at least {outcome.speedup:.1f}x faster ({chosen.source}); the original does not finish within "
                    f"{outcome.original_ms / 1000:.0f} s, so equivalence was shown on sampled and perturbed "
                    "instances, not on the live data")
        if parameter_sets > 1:
            least = evidence.speedup_min if evidence.speedup_min is not None else outcome.speedup
            return (f"verified equivalent and faster on each of {parameter_sets} parameter sets "
                    f"({outcome.speedup:.2f}x geometric mean, {least:.2f}x at least; {chosen.source})")
        return f"verified equivalent and {outcome.speedup:.2f}x faster ({chosen.source})"
    if not attempts and refused:
        return f"the {backend} backend refused the prompt: {refused[0]}"
    if not attempts:
        return f"the {backend} backend found no candidate rewrite for this query"
    summary = ", ".join(f"{a.source}: {a.outcome.status.value}" for a in attempts)
    return f"no candidate was verified faster ({summary})"


@dataclass
class RewriteResult:
    """The answer to one Rewrite request."""

    status: str
    """`improved` or `no_verified_improvement`."""
    original_sql: str
    rewritten_sql: str
    message: str
    backend: str
    speedup: float = 1.0
    original_ms: float = 0.0
    rewrite_ms: float = 0.0
    source: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    generation_ms: float = 0.0
    verification_ms: float = 0.0
    queue_wait_ms: float = 0.0
    """How long the request waited for a verification slot (0 for an answer from the cache)."""
    measured_at: str = ""
    cached: bool = False
    verified_as: str = ""
    original_example: str = ""
    """The original as executed: with the first parameter set bound, for a statement with `$n`."""
    model: str = ""
    backend_version: str = ""
    generation: dict[str, Any] | None = None
    """For a model backend: drafts, repair rounds, tokens, tokens/s, generation vs check time."""
    demonstrations: list[dict[str, Any]] = field(default_factory=list)
    """The retrieved demonstrations shown to the model, with their similarity scores."""
    search: dict[str, Any] | None = None
    """What the rules' search did: candidates found, planned, pruned, milliseconds, cut short."""

    def chosen(self) -> Attempt | None:
        return next((a for a in self.attempts if a.sql == self.rewritten_sql and a.source == self.source), None)

    def evidence(self) -> dict[str, Any]:
        """Everything behind the answer, as one JSON-ready document."""
        chosen = self.chosen() if self.status == IMPROVED else None
        evidence = chosen.outcome.evidence if chosen is not None else None
        return {
            "status": self.status,
            "message": self.message,
            "original_sql": self.original_sql,
            "rewritten_sql": self.rewritten_sql,
            "verified": self.status == IMPROVED,
            "speedup": round(self.speedup, 4),
            "original_ms": round(self.original_ms, 3),
            "rewrite_ms": round(self.rewrite_ms, 3),
            "source": self.source,
            "backend": self.backend,
            "latencies_ms": evidence.latencies.to_json() if evidence and evidence.latencies else None,
            "equivalence": evidence.equivalence.to_json() if evidence and evidence.equivalence else None,
            "plan": {
                "before": evidence.plan_before,
                "after": evidence.plan_after,
                "changed": evidence.plan_changed,
                "cost_before": evidence.cost_before,
                "cost_after": evidence.cost_after,
            } if evidence else None,
            "parameter_sets": [s.to_json() for s in evidence.parameter_sets] if evidence else [],
            "speedup_min": (evidence.speedup_min if evidence and evidence.speedup_min is not None
                            else round(self.speedup, 4)),
            "original_example": self.original_example,
            "pretty": pretty_diff(self.original_sql, self.rewritten_sql) if evidence else None,
            "attempts": [a.to_json() for a in self.attempts],
            "model": self.model,
            "backend_version": self.backend_version,
            "generation_ms": round(self.generation_ms, 3),
            "verification_ms": round(self.verification_ms, 3),
            "queue_wait_ms": round(self.queue_wait_ms, 3),
            "generation": self.generation,
            "demonstrations": self.demonstrations,
            "search": self.search,
            "verified_as": self.verified_as,
            "measured_at": self.measured_at,
            "cached": self.cached,
        }


def evidence_json(result: RewriteResult) -> str:
    return json.dumps(result.evidence(), default=str)


def pretty(sql: str) -> str:
    """PostgreSQL's grammar, printed one clause per line (the text itself if it does not parse)."""
    try:
        return str(pglast.prettify(sql, comma_at_eoln=True, special_functions=True))
    except Exception:  # noqa: BLE001 - pretty-printing is a convenience, never a failure
        return sql.strip()


def pretty_diff(before: str, after: str) -> dict[str, str]:
    """Both texts pretty-printed, and a unified diff of the two (for review in psql or a diff tool)."""
    a, b = pretty(before), pretty(after)
    diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "original", "rewrite", lineterm=""))
    return {"before": a, "after": b, "diff": diff}
