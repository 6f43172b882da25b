"""From the verifier's Outcome to the seed's reward and execution report: pure functions, no I/O.

The reward comes from the verifier alone. Its value R is LASER's hierarchical reward (Eq. 7-8,
`model.rewards.laser_reward`) with one change of tier: a statement the guard refuses (data-modifying,
several statements, a function with side effects, or not parseable) is put with "no SQL at all" at
the floor ρfmt, so that a hostile candidate gets the lowest reward there is. The seed's `score` is
R mapped linearly from [ρfmt, η] onto [0, 1] (a refused candidate 0, an unchanged query 0.5, a
verified 3x faster one 0.9). The breakdown carries R, LASER's components and SPA's (§3.4, gates
open) as they are, the speedup and the verdict's flags, and the text score of the action's
analysis fields, which enters the score only with a `text_weight` above 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from model.env.contract import Action, ExecutionReport, Reward
from model.rewards import LaserRewardConfig, SpaRewardConfig, laser_reward_components, spa_reward_components
from sidecar.verify.outcome import Outcome, OutcomeStatus
from sidecar.verify.verifier import OriginalProfile

REFUSED = frozenset({OutcomeStatus.GUARD_REFUSED, OutcomeStatus.EXTRACTION_FAIL})
"""Outcomes that score the floor: nothing was run."""

SEVERITIES = frozenset({"low", "medium", "high", "critical"})

_LABELS = {
    OutcomeStatus.FASTER: "faster, results verified equal",
    OutcomeStatus.NO_CHANGE: "no change, results verified equal",
    OutcomeStatus.SLOWER: "slower, results verified equal",
    OutcomeStatus.EQUIVALENT: "equivalent, not timed",
    OutcomeStatus.TRIVIAL: "trivial",
    OutcomeStatus.NOT_EQUIVALENT: "wrong results",
    OutcomeStatus.SHAPE_MISMATCH: "wrong result shape",
    OutcomeStatus.UNVERIFIABLE: "unverifiable",
    OutcomeStatus.EXEC_ERROR: "error",
    OutcomeStatus.GUARD_REFUSED: "refused",
    OutcomeStatus.EXTRACTION_FAIL: "no query",
}


@dataclass(frozen=True)
class ScoreConfig:
    """How an outcome (and, optionally, the action's text) becomes the seed's reward."""

    laser: LaserRewardConfig = LaserRewardConfig()
    spa: SpaRewardConfig = SpaRewardConfig()
    text_weight: float = 0.0
    """Share of the score taken by `text_score` (the analysis fields); 0: they weigh nothing."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.text_weight) and 0.0 <= self.text_weight <= 1.0):
            raise ValueError(f"text_weight must be in [0, 1]; got {self.text_weight}")


def reward_value(outcome: Outcome, config: ScoreConfig = ScoreConfig()) -> float:
    """R: LASER Eq. 7-8, with a refused statement at the floor ρfmt (see the module).

    >>> reward_value(Outcome(OutcomeStatus.GUARD_REFUSED)), reward_value(Outcome(OutcomeStatus.EXEC_ERROR))
    (-3.0, -2.5)
    >>> reward_value(Outcome(OutcomeStatus.NOT_EQUIVALENT))
    -1.5
    >>> round(reward_value(Outcome(OutcomeStatus.FASTER, speedup=3.0)), 4)
    2.4
    """
    if outcome.status in REFUSED:
        return config.laser.format_penalty
    return laser_reward_components(outcome, config.laser)["total"]


def normalized(value: float, config: ScoreConfig = ScoreConfig()) -> float:
    """R mapped from [ρfmt, η] onto [0, 1].

    >>> normalized(-3.0), normalized(0.0), normalized(2.4), normalized(-1.5)
    (0.0, 0.5, 0.9, 0.25)
    """
    low, high = config.laser.format_penalty, config.laser.speedup_bonus
    return min(1.0, max(0.0, (value - low) / (high - low)))


def text_score(action: Action) -> float:
    """How completely the seed's analysis fields are filled in, in [0, 1]: the mean of the share of
    suggestions with an issue_type, a description, a fix and a known severity; a summary; an
    estimated improvement. Form only, not truth: weigh it with care.

    >>> text_score(Action()), text_score(Action(summary="scans", estimated_improvement="10x"))
    (0.0, 0.6667)
    >>> text_score(Action(suggestions=({"issue_type": "cast", "description": "d", "fix": "f", "severity": "high"},),
    ...                   summary="s", estimated_improvement="e"))
    1.0
    """
    complete = sum(1 for s in action.suggestions
                   if all(isinstance(s.get(k), str) and s.get(k) for k in ("issue_type", "description", "fix"))
                   and str(s.get("severity", "")).lower() in SEVERITIES)
    share = complete / len(action.suggestions) if action.suggestions else 0.0
    parts = (share, float(bool(action.summary.strip())), float(bool(action.estimated_improvement.strip())))
    return round(sum(parts) / len(parts), 4)


def reward(outcome: Outcome, action: Action, config: ScoreConfig = ScoreConfig()) -> Reward:
    """The seed's reward for one submission.

    >>> r = reward(Outcome(OutcomeStatus.GUARD_REFUSED, "got DELETE"), Action("DELETE FROM t", summary="x"))
    >>> r.score, r.breakdown["reward"], r.breakdown["refused"], r.feedback
    (0.0, -3.0, 1.0, 'refused: got DELETE (nothing was run)')
    """
    value = reward_value(outcome, config)
    verified = normalized(value, config)
    text = text_score(action)
    refused = outcome.status in REFUSED
    # A refused statement stays at the floor whatever its text says.
    score = 0.0 if refused else (1.0 - config.text_weight) * verified + config.text_weight * text
    breakdown = {"verifier": verified, "reward": value}
    breakdown.update({f"laser_{k}": v for k, v in laser_reward_components(outcome, config.laser).items()})
    breakdown.update({f"spa_{k}": v for k, v in spa_reward_components(outcome, config.spa).items()})
    breakdown.update({"speedup": outcome.speedup, "results_match": float(outcome.equivalent),
                      "refused": float(refused), "text": text, "text_weight": config.text_weight})
    feedback = verdict(outcome)
    if config.text_weight > 0.0:
        feedback += f"; analysis fields {text:.2f}, weighted {config.text_weight:.2f}"
    return Reward(score=score, breakdown=breakdown, feedback=feedback)


def verdict(outcome: Outcome) -> str:
    """One line: what the verifier concluded, and why.

    >>> verdict(Outcome(OutcomeStatus.FASTER, "3.00x (30.0 ms -> 10.0 ms, median of 3)", speedup=3.0))
    'faster, results verified equal: 3.00x (30.0 ms -> 10.0 ms, median of 3)'
    """
    text = f"{_LABELS[outcome.status]}: {outcome.detail}" if outcome.detail else _LABELS[outcome.status]
    if outcome.status in REFUSED:
        text += " (nothing was run)"
    return text


def execution_report(outcome: Outcome, original: OriginalProfile | None) -> ExecutionReport:
    """The outcome in the seed's `/execute` terms (see ExecutionReport)."""
    warmup = original.warmup if original is not None else None
    original_rows = (warmup.row_count or 0) if warmup is not None else 0
    timed = outcome.status.timed
    equivalence = outcome.evidence.equivalence
    failed = outcome.status in REFUSED or outcome.status is OutcomeStatus.EXEC_ERROR
    return ExecutionReport(
        original_ms=outcome.original_ms if timed else (warmup.elapsed_ms if warmup is not None else 0.0),
        optimized_ms=outcome.candidate_ms if timed else 0.0,
        speedup=outcome.speedup if timed else 0.0,
        results_match=outcome.equivalent,
        original_rows=original_rows,
        optimized_rows=equivalence.candidate_rows if equivalence is not None else None,
        original_error=None,
        optimized_error=outcome.detail if failed else None,
        verdict=verdict(outcome),
        explain_plan=outcome.evidence.plan_after,
        status=outcome.status.value,
        detail=outcome.detail,
    )
