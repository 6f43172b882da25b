"""The typed result of verifying one candidate, with all of its evidence."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from sidecar.verify.evidence import Evidence


class OutcomeStatus(str, enum.Enum):
    """What the verifier concluded, in the order of the checks that decide it (cheap first)."""

    EXTRACTION_FAIL = "extraction_fail"
    """No SQL statement in a model's completion (decided before the verifier)."""
    GUARD_REFUSED = "guard_refused"
    """Not exactly one read-only statement, or not parseable."""
    EXEC_ERROR = "exec_error"
    """PostgreSQL cannot plan or run it."""
    TRIVIAL = "trivial"
    """Near-identical text (normalized edit distance below SPA's threshold): not executed, so its
    equivalence is not established; it could not be worth suggesting anyway."""
    SHAPE_MISMATCH = "shape_mismatch"
    NOT_EQUIVALENT = "not_equivalent"
    UNVERIFIABLE = "unverifiable"
    """It ran, but equivalence could not be decided (a timeout, a result too large, ties under LIMIT)."""
    EQUIVALENT = "equivalent"
    """Verified equivalent, speed not measured: its plan is the original's (so is its speed), or
    the caller asked for equivalence only."""
    SLOWER = "slower"
    NO_CHANGE = "no_change"
    FASTER = "faster"

    @property
    def equivalent(self) -> bool:
        """True for the outcomes that mean "verified equivalent".

        >>> OutcomeStatus.SLOWER.equivalent, OutcomeStatus.UNVERIFIABLE.equivalent, OutcomeStatus.TRIVIAL.equivalent
        (True, False, False)
        """
        return self in _EQUIVALENT

    @property
    def timed(self) -> bool:
        """True for the outcomes whose speedup comes from timed runs."""
        return self in _TIMED


_EQUIVALENT = frozenset(
    {OutcomeStatus.EQUIVALENT, OutcomeStatus.SLOWER, OutcomeStatus.NO_CHANGE, OutcomeStatus.FASTER}
)
_TIMED = frozenset({OutcomeStatus.SLOWER, OutcomeStatus.NO_CHANGE, OutcomeStatus.FASTER})


@dataclass(frozen=True)
class Outcome:
    """The verdict on a candidate R for an original Q.

    `speedup` is T(Q)/T(R) from the timed runs (0.0 when no timing was done); `evidence` holds
    plans, latencies, row counts, hashes and distances.
    """

    status: OutcomeStatus
    detail: str = ""
    speedup: float = 0.0
    original_ms: float = 0.0
    candidate_ms: float = 0.0
    evidence: Evidence = field(default_factory=Evidence)
    counterexample: dict[str, Any] | None = None
    """For not_equivalent: the instance (live data or a perturbed copy) and the rows that differ."""

    @property
    def equivalent(self) -> bool:
        return self.status.equivalent

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        >>> Outcome(OutcomeStatus.FASTER, speedup=3.0).to_json()["status"]
        'faster'
        """
        out = {
            "status": self.status.value,
            "detail": self.detail,
            "equivalent": self.equivalent,
            "speedup": round(self.speedup, 4),
            "original_ms": round(self.original_ms, 3),
            "candidate_ms": round(self.candidate_ms, 3),
            "evidence": self.evidence.to_json(),
        }
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample
        return out
