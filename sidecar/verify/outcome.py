"""The typed result of verifying one candidate, with all of its evidence."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class OutcomeStatus(str, enum.Enum):
    """What the verifier concluded, from worst to best (the order of the checks)."""

    EXTRACTION_FAIL = "extraction_fail"
    GUARD_REFUSED = "guard_refused"
    EXEC_ERROR = "exec_error"
    SHAPE_MISMATCH = "shape_mismatch"
    NOT_EQUIVALENT = "not_equivalent"
    UNVERIFIABLE = "unverifiable"
    TRIVIAL = "trivial"
    SLOWER = "slower"
    NO_CHANGE = "no_change"
    FASTER = "faster"

    @property
    def equivalent(self) -> bool:
        """True for the outcomes that mean "verified equivalent".

        >>> OutcomeStatus.SLOWER.equivalent, OutcomeStatus.UNVERIFIABLE.equivalent
        (True, False)
        """
        return self in _EQUIVALENT


_EQUIVALENT = frozenset(
    {OutcomeStatus.TRIVIAL, OutcomeStatus.SLOWER, OutcomeStatus.NO_CHANGE, OutcomeStatus.FASTER}
)


@dataclass(frozen=True)
class Outcome:
    """The verdict on a candidate R for an original Q.

    `speedup` is T(Q)/T(R) from the timed runs (0.0 when no timing was done);
    `evidence` holds plans, latencies, row counts, hashes and distances as plain JSON values.
    """

    status: OutcomeStatus
    detail: str = ""
    speedup: float = 0.0
    original_ms: float = 0.0
    candidate_ms: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)
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
            "evidence": self.evidence,
        }
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample
        return out
