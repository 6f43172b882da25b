"""What the verifier saw, as typed records: plans, the equivalence check, latencies, parameter sets.

One schema for every reader (the pipeline's answer, the training rewards, the benchmarks, the
extension's advisories): fields are read by name, never by string key. `to_json()` writes the
documented JSON shape — a field that was not measured is left out, not written as null.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.verify.differential import DifferentialReport


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _compact(pairs: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in pairs.items() if value is not None}


@dataclass(frozen=True)
class PlanDivergenceEvidence:
    """How far the candidate's plan is from the original's (SPA §3.4's plan divergence)."""

    score: float
    differences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "differences": list(self.differences)}


@dataclass(frozen=True)
class EquivalenceEvidence:
    """How equivalence was decided: on the live data (row count and result hashes), or, for an
    original beyond the cap, on sampled and perturbed instances alone (how many were informative).

    >>> EquivalenceEvidence("result multiset on live data", rows=3, original_hash="a", candidate_hash="a",
    ...                     note="").to_json()
    {'method': 'result multiset on live data', 'rows': 3, 'original_hash': 'a', 'candidate_hash': 'a', 'note': ''}
    """

    method: str
    rows: int | None = None
    original_hash: str | None = None
    candidate_hash: str | None = None
    note: str | None = None
    examples: dict[str, Any] | None = None
    """Rows only one side returned, when the results differ on the live data (JSON rows)."""
    candidate_rows: int | None = None
    """The candidate's row count on the live data (`rows` is the original's)."""
    instances: int | None = None
    informative_instances: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact({"method": self.method, "rows": self.rows, "candidate_rows": self.candidate_rows,
                         "original_hash": self.original_hash, "candidate_hash": self.candidate_hash,
                         "note": self.note, "examples": self.examples,
                         "instances": self.instances, "informative_instances": self.informative_instances})


@dataclass(frozen=True)
class Latencies:
    """The timed runs, in milliseconds. For an original beyond the cap, `original` is empty and
    `original_at_least` is the cap."""

    original: tuple[float, ...]
    candidate: tuple[float, ...]
    candidate_spread: float
    original_spread: float | None = None
    warmup_original: float | None = None
    candidate_timeouts: int | None = None
    candidate_cap_ms: int | None = None
    original_at_least: int | None = None

    def to_json(self) -> dict[str, Any]:
        return _compact({
            "original": [round(x, 3) for x in self.original],
            "candidate": [round(x, 3) for x in self.candidate],
            "original_spread": _rounded(self.original_spread, 3),
            "candidate_spread": round(self.candidate_spread, 3),
            "warmup_original": _rounded(self.warmup_original, 3),
            "candidate_timeouts": self.candidate_timeouts,
            "candidate_cap_ms": self.candidate_cap_ms,
            "original_at_least": self.original_at_least,
        })


@dataclass(frozen=True)
class ParameterSetResult:
    """The verdict on one parameter set of a statement with `$n`."""

    set: int
    parameters: dict[str, dict[str, str | None]]
    """`{"$1": {"value": ..., "source": ...}}`: the values bound, and where each came from."""
    status: str
    detail: str
    speedup: float
    original_ms: float
    candidate_ms: float
    speedup_is_lower_bound: bool

    def to_json(self) -> dict[str, Any]:
        return {"set": self.set, "parameters": self.parameters, "status": self.status, "detail": self.detail,
                "speedup": round(self.speedup, 4), "original_ms": round(self.original_ms, 3),
                "candidate_ms": round(self.candidate_ms, 3), "speedup_is_lower_bound": self.speedup_is_lower_bound}


@dataclass
class Evidence:
    """Everything behind one verdict. Filled step by step as the checks run (so a verdict that
    stops early carries only what was established before it).

    >>> Evidence(edit_distance=0.25, plan_changed=True).to_json()
    {'plan_changed': True, 'edit_distance': 0.25}
    """

    parameters: dict[str, dict[str, str | None]] | None = None
    """The values the candidate was bound to, for an original with `$n`."""
    plan_before: str | None = None
    plan_after: str | None = None
    plan_changed: bool | None = None
    plan_divergence: PlanDivergenceEvidence | None = None
    cost_before: float | None = None
    cost_after: float | None = None
    sqlstate: str | None = None
    """The SQLSTATE of the error that ended the verification, when one did."""
    stage: str | None = None
    """Where that error happened: "explain", "explain (generic plan)" or "execute"."""
    edit_distance: float | None = None
    """Normalized Levenshtein distance between the two texts (SPA's triviality filter)."""
    original_timed_out_ms: int | None = None
    """The cap the original did not finish within (its result is unknown)."""
    candidate_timed_out_ms: int | None = None
    """The cap the candidate's first run did not finish within (so its result was not compared)."""
    equivalence: EquivalenceEvidence | None = None
    perturbed_instances: DifferentialReport | None = None
    latencies: Latencies | None = None
    speedup_is_lower_bound: bool = False
    """The original's time is a lower bound (it hit the cap), so the speedup is one too."""
    original_timeouts_while_timed: int = 0
    """Timed runs of the original that hit the cap (each counted at the cap)."""
    parameter_sets: tuple[ParameterSetResult, ...] = ()
    speedup_min: float | None = None
    """The least speedup over the parameter sets."""
    failed_parameter_set: int | None = None
    """The first parameter set on which the candidate was not faster."""
    def to_json(self) -> dict[str, Any]:
        return _compact({
            "parameters": self.parameters,
            "plan_after": self.plan_after,
            "plan_before": self.plan_before,
            "plan_changed": self.plan_changed,
            "plan_divergence": self.plan_divergence.to_json() if self.plan_divergence else None,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "sqlstate": self.sqlstate,
            "stage": self.stage,
            "original_timed_out_ms": self.original_timed_out_ms,
            "candidate_timed_out_ms": self.candidate_timed_out_ms,
            "equivalence": self.equivalence.to_json() if self.equivalence else None,
            "perturbed_instances": self.perturbed_instances.to_json() if self.perturbed_instances else None,
            "edit_distance": self.edit_distance,
            "latencies_ms": self.latencies.to_json() if self.latencies else None,
            "speedup_is_lower_bound": True if self.speedup_is_lower_bound else None,
            "original_timeouts_while_timed": self.original_timeouts_while_timed or None,
            "parameter_sets": [s.to_json() for s in self.parameter_sets] or None,
            "speedup_min": self.speedup_min,
            "failed_parameter_set": self.failed_parameter_set,
        })
