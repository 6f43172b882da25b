"""Training rewards (LASER Eq. 7-8, SPA Eq. 2-3) as pure functions of the verifier's Outcome.

Nothing here touches a database: the verifier has already done the waiting, and an `Outcome`
carries everything a reward needs (status, speedup, and the `edit_distance` / `plan_changed`
evidence). The same Outcome therefore scores a rollout in training, a candidate at inference
and a query in the benchmark.

Two reward families:

* **LASER** (seed 000, §5.2, "Performance-Driven Hierarchical Reward"): a strict validity hierarchy
  of fixed penalties ρfmt < ρexe < ρsem < 0 (Eq. 7), and for verified-equivalent rewrites an
  asymmetric efficiency term F = η·tanh(ln(T0/Tq')) when faster, tanh(ln(T0/Tq')) otherwise (Eq. 8).
  Defaults from §6.1.5: ρfmt = -3, ρexe = -2.5, ρsem = -1.5, η = 3.
* **SPA** (seed 002, §3.4-3.5): milestone rewards for syntax validity, (textually non-trivial)
  semantic equivalence and plan divergence, plus the bounded speedup reward Rs(S) with a dead zone
  δ = 0.1, combined under the group-level PGARS gates Γ (Eq. 2-3).

The status → failure-tier mapping is `LASER_TIERS` (LASER) and `spa_milestones` (SPA); both are
exhaustive over `OutcomeStatus` and explained where they are defined.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from sidecar.verify.outcome import Outcome, OutcomeStatus

# --------------------------------------------------------------------------------------------
# LASER: hierarchical reward (seed 000, §5.2, Eq. 7-8)
# --------------------------------------------------------------------------------------------


class LaserTier(str, enum.Enum):
    """The branches of LASER Eq. 7, from worst to best."""

    FORMAT = "format"
    """ExtractionFail(q'): no recognizable SQL block (q' empty or null) → ρfmt."""
    EXECUTION = "execution"
    """ExecError(q'): a SQL string that does not execute (e.g. a syntax error) → ρexe."""
    SEMANTIC = "semantic"
    """¬Equiv(q', q0): it runs, but is not verified to return the original's result → ρsem."""
    SUCCESS = "success"
    """Success(q'): verified equivalent → F(Tq', T0) of Eq. 8."""


LASER_TIERS: Mapping[OutcomeStatus, LaserTier] = MappingProxyType(
    {
        # No SQL came out of the completion at all: the paper's ExtractionFail.
        OutcomeStatus.EXTRACTION_FAIL: LaserTier.FORMAT,
        # The guard parses with PostgreSQL's grammar, so it refuses unparseable text (the paper's own
        # example of ExecError, "syntax errors") as well as statements that are not one read-only
        # query. Either way a SQL string was extracted but cannot be executed as a rewrite: ρexe.
        OutcomeStatus.GUARD_REFUSED: LaserTier.EXECUTION,
        # EXPLAIN or the run itself failed: exactly the paper's ExecError.
        OutcomeStatus.EXEC_ERROR: LaserTier.EXECUTION,
        # Ran, but the result differs (different columns, or different rows): ¬Equiv.
        OutcomeStatus.SHAPE_MISMATCH: LaserTier.SEMANTIC,
        OutcomeStatus.NOT_EQUIVALENT: LaserTier.SEMANTIC,
        # Ran, but equivalence could not be established (a timeout, a result too large to compare,
        # LIMIT without a total order). The paper verifies Equiv "by executing both queries and
        # comparing whether their results are identical" (§6.1); without that comparison Equiv does
        # not hold, so this is the ¬Equiv branch. Conservative: never rewarded as a success, and never
        # punished harder than a candidate that ran and was proven wrong.
        OutcomeStatus.UNVERIFIABLE: LaserTier.SEMANTIC,
        # Near-identical text: the verifier does not execute it (SPA's filter, applied before the
        # equivalence check to save the run). LASER has no triviality filter: such a rewrite is, but
        # for a changed character or two, the original, equivalent at Tq' = T0, so F = 0 — what an
        # exact copy of the original scores. Scoring it ρsem instead would punish copies harder than
        # the paper does; scoring it 0 gives no incentive to change a literal, as a copy scores 0 too.
        OutcomeStatus.TRIVIAL: LaserTier.SUCCESS,
        # Verified equivalent, not timed because its plan is the original's: Tq' = T0, F = 0.
        OutcomeStatus.EQUIVALENT: LaserTier.SUCCESS,
        OutcomeStatus.SLOWER: LaserTier.SUCCESS,
        OutcomeStatus.NO_CHANGE: LaserTier.SUCCESS,
        OutcomeStatus.FASTER: LaserTier.SUCCESS,
    }
)


@dataclass(frozen=True)
class LaserRewardConfig:
    """Hyperparameters of LASER's hierarchical reward (Eq. 7-8); defaults from §6.1.5."""

    format_penalty: float = -3.0
    """ρfmt: reward when no SQL could be extracted from the completion."""
    execution_penalty: float = -2.5
    """ρexe: reward for SQL that is refused or fails to execute."""
    semantic_penalty: float = -1.5
    """ρsem: reward for SQL that runs but is not verified equivalent."""
    speedup_bonus: float = 3.0
    """η > 1: multiplies the efficiency term of Eq. 8 when the rewrite is faster (Tq' < T0)."""

    def __post_init__(self) -> None:
        values = (self.format_penalty, self.execution_penalty, self.semantic_penalty, self.speedup_bonus)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("LASER reward hyperparameters must be finite")
        if not self.format_penalty < self.execution_penalty < self.semantic_penalty < 0.0:
            raise ValueError("LASER Eq. 7 needs format_penalty < execution_penalty < semantic_penalty < 0; "
                             f"got {self.format_penalty}, {self.execution_penalty}, {self.semantic_penalty}")
        if self.speedup_bonus <= 1.0:
            raise ValueError(f"speedup_bonus (η) must be greater than 1; got {self.speedup_bonus}")


def laser_tier(status: OutcomeStatus) -> LaserTier:
    """The branch of LASER Eq. 7 that a verifier status falls into (see `LASER_TIERS`).

    >>> laser_tier(OutcomeStatus.EXTRACTION_FAIL).value, laser_tier(OutcomeStatus.GUARD_REFUSED).value
    ('format', 'execution')
    >>> laser_tier(OutcomeStatus.UNVERIFIABLE).value, laser_tier(OutcomeStatus.TRIVIAL).value
    ('semantic', 'success')
    """
    return LASER_TIERS[status]


def laser_efficiency(speedup: float, speedup_bonus: float = 3.0) -> float:
    """F(Tq', T0) of LASER Eq. 8 as a function of the speedup S = T0/Tq'.

    η·tanh(ln S) when the rewrite is faster (S > 1), tanh(ln S) otherwise; so F ∈ (-1, η),
    F(1) = 0, and the two branches meet continuously at S = 1.

    >>> round(laser_efficiency(2.0), 4), round(laser_efficiency(0.5), 4), laser_efficiency(1.0)
    (1.8, -0.6, 0.0)
    >>> round(laser_efficiency(2.0, speedup_bonus=1.5), 4)
    0.9
    >>> laser_efficiency(0.0)
    Traceback (most recent call last):
    ...
    ValueError: a speedup must be positive and not NaN; got 0.0
    """
    _check_speedup(speedup)
    shaped = math.tanh(math.log(speedup))
    return speedup_bonus * shaped if speedup > 1.0 else shaped


def laser_reward_components(outcome: Outcome, config: LaserRewardConfig = LaserRewardConfig()
                            ) -> dict[str, float]:
    """LASER Eq. 7 split by branch, for logging: one of the first four is non-zero at most.

    Keys: `format`, `execution`, `semantic` (the penalties ρ), `efficiency` (F of Eq. 8) and
    `total` (their sum, which is `laser_reward`).

    >>> laser_reward_components(Outcome(OutcomeStatus.EXEC_ERROR))
    {'format': 0.0, 'execution': -2.5, 'semantic': 0.0, 'efficiency': 0.0, 'total': -2.5}
    >>> c = laser_reward_components(Outcome(OutcomeStatus.FASTER, speedup=2.0))
    >>> round(c["efficiency"], 4), round(c["total"], 4)
    (1.8, 1.8)
    """
    tier = laser_tier(outcome.status)
    parts = {"format": 0.0, "execution": 0.0, "semantic": 0.0, "efficiency": 0.0}
    if tier is LaserTier.FORMAT:
        parts["format"] = config.format_penalty
    elif tier is LaserTier.EXECUTION:
        parts["execution"] = config.execution_penalty
    elif tier is LaserTier.SEMANTIC:
        parts["semantic"] = config.semantic_penalty
    elif outcome.status.timed:
        parts["efficiency"] = laser_efficiency(_measured_speedup(outcome), config.speedup_bonus)
    # else TRIVIAL or EQUIVALENT: untimed; Tq' = T0 gives F = 0 (see LASER_TIERS).
    parts["total"] = sum(parts.values())
    return parts


def laser_reward(outcome: Outcome, config: LaserRewardConfig = LaserRewardConfig()) -> float:
    """R(q') of LASER Eq. 7: ρfmt, ρexe or ρsem by failure tier, else F(Tq', T0) of Eq. 8.

    Every failure scores below every equivalent rewrite, however slow: min F = -1 > ρsem.

    >>> laser_reward(Outcome(OutcomeStatus.EXTRACTION_FAIL))
    -3.0
    >>> laser_reward(Outcome(OutcomeStatus.NOT_EQUIVALENT)), laser_reward(Outcome(OutcomeStatus.UNVERIFIABLE))
    (-1.5, -1.5)
    >>> round(laser_reward(Outcome(OutcomeStatus.FASTER, speedup=3.0)), 4)
    2.4
    >>> round(laser_reward(Outcome(OutcomeStatus.SLOWER, speedup=0.5)), 4)
    -0.6
    >>> laser_reward(Outcome(OutcomeStatus.TRIVIAL, "the plan is unchanged"))
    0.0
    >>> round(laser_reward(Outcome(OutcomeStatus.NO_CHANGE, speedup=1.05)), 4)  # no dead zone in Eq. 8
    0.1463
    """
    return laser_reward_components(outcome, config)["total"]


# --------------------------------------------------------------------------------------------
# SPA: milestone rewards, speedup reward and PGARS gates (seed 002, §3.4-3.5, Eq. 2-3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaRewardConfig:
    """Hyperparameters of SPA's reward (§3.4, Eq. 2-3).

    The paper names the milestone rewards Rsyn, Req, Rplan but publishes no values for them; unit
    rewards are this module's choice, on the same scale as Rs(S) ∈ (-1, 1).
    """

    syntax_reward: float = 1.0
    """Rsyn: for a candidate that parses and passes EXPLAIN (milestone "syn")."""
    equivalence_reward: float = 1.0
    """Req: for a verified-equivalent, textually non-trivial candidate (milestone "eq")."""
    plan_reward: float = 1.0
    """Rplan: for an equivalent candidate whose physical plan differs from the original's ("plan")."""
    dead_zone: float = 0.1
    """δ of Rs(S): speedups within [1 - δ, 1 + δ] are neutral (reward 0)."""
    min_edit_distance: float = 0.01
    """λ: the normalized Levenshtein distance a rewrite needs to count as textually non-trivial."""
    gate_threshold: float = 0.5
    """τ of Eq. 2: a milestone's gate opens when at least this share of the group reaches it.
    0.5 is the setting of the full SPA model (§4, ablation of τ ∈ {25%, 50%, 75%})."""

    def __post_init__(self) -> None:
        for name in ("syntax_reward", "equivalence_reward", "plan_reward"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite, non-negative number; got {value}")
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError(f"dead_zone (δ) must be in [0, 1); got {self.dead_zone}")
        if not 0.0 <= self.min_edit_distance <= 1.0:
            raise ValueError(f"min_edit_distance (λ) must be in [0, 1]; got {self.min_edit_distance}")
        if not 0.0 < self.gate_threshold <= 1.0:
            raise ValueError(f"gate_threshold (τ) must be in (0, 1]; got {self.gate_threshold}")


@dataclass(frozen=True)
class SpaMilestones:
    """The per-rollout indicators 1syn,i, 1eq,i, 1plan,i of SPA Eq. 3 (cumulative: each implies the last)."""

    syntax: bool
    """The candidate parsed, passed the guard and EXPLAIN."""
    equivalence: bool
    """Also verified equivalent, with normalized edit distance ≥ λ."""
    plan: bool
    """Also a different physical plan; only then is latency measured and Rs(S) defined."""


@dataclass(frozen=True)
class PgarsGates:
    """The group-level gates Γsyn, Γeq, Γplan of SPA Eq. 2. All open = the ungated reward."""

    syntax: bool = True
    """Γsyn: unlocks the equivalence reward (and, with the others, everything above it)."""
    equivalence: bool = True
    """Γeq: unlocks the plan-divergence reward."""
    plan: bool = True
    """Γplan: unlocks the speedup reward Rs(S)."""


ALL_GATES_OPEN = PgarsGates()

_SYNTAX_FAILURES = frozenset(
    {OutcomeStatus.EXTRACTION_FAIL, OutcomeStatus.GUARD_REFUSED, OutcomeStatus.EXEC_ERROR}
)


def spa_milestones(outcome: Outcome, config: SpaRewardConfig = SpaRewardConfig()) -> SpaMilestones:
    """Which SPA milestones a candidate reached.

    Mapping, and why:

    * syntax: every status except extraction_fail, guard_refused and exec_error. SPA checks
      validity with EXPLAIN (§4.1.2); a refused or failing statement is never EXPLAINed or run.
    * equivalence: `outcome.equivalent` (equivalent / slower / no_change / faster) *and* textually
      non-trivial, edit distance ≥ λ: §3.4 uses the distance exactly to stop near-identical SQL from
      "obtaining correctness rewards". Trivial (near-identical text, never executed), shape
      mismatch, not-equivalent and unverifiable fail it: an inconclusive check is "unsuccessful" in
      SPA (§3.4, a rewrite that times out). The evidence's `edit_distance` decides when present;
      when it is missing, an equivalent status passed the verifier's own text filter and counts.
    * plan: equivalence and the evidence's `plan_changed` (missing: a timed status had a changed
      plan, the verifier only times those). Requiring equivalence keeps semantics-changing plans
      unrewarded.

    λ is compared with ≥, as in the verifier and DESIGN.md (SPA writes "exceeds"; the boundary is
    immaterial).

    >>> from sidecar.verify import Evidence
    >>> spa_milestones(Outcome(OutcomeStatus.EXEC_ERROR))
    SpaMilestones(syntax=False, equivalence=False, plan=False)
    >>> spa_milestones(Outcome(OutcomeStatus.NOT_EQUIVALENT, evidence=Evidence(plan_changed=True)))
    SpaMilestones(syntax=True, equivalence=False, plan=False)
    >>> spa_milestones(Outcome(OutcomeStatus.EQUIVALENT, evidence=Evidence(edit_distance=0.2, plan_changed=False)))
    SpaMilestones(syntax=True, equivalence=True, plan=False)
    >>> spa_milestones(Outcome(OutcomeStatus.TRIVIAL, evidence=Evidence(edit_distance=0.0, plan_changed=True)))
    SpaMilestones(syntax=True, equivalence=False, plan=False)
    >>> spa_milestones(Outcome(OutcomeStatus.FASTER, speedup=2.0))
    SpaMilestones(syntax=True, equivalence=True, plan=True)
    """
    syntax = outcome.status not in _SYNTAX_FAILURES
    equivalence = syntax and outcome.equivalent and _textually_nontrivial(outcome, config)
    plan = equivalence and _plan_changed(outcome)
    return SpaMilestones(syntax=syntax, equivalence=equivalence, plan=plan)


def spa_speedup_reward(speedup: float, dead_zone: float = 0.1) -> float:
    """Rs(S) of SPA §3.4: tanh(ln(S/(1-δ))) below 1-δ, 0 within [1-δ, 1+δ], tanh(ln(S/(1+δ))) above.

    Bounded in (-1, 1), continuous, and zero across the whole dead zone.

    >>> round(spa_speedup_reward(2.2), 4), round(spa_speedup_reward(0.45), 4)
    (0.6, -0.6)
    >>> spa_speedup_reward(1.1), spa_speedup_reward(0.9), spa_speedup_reward(1.05)
    (0.0, 0.0, 0.0)
    >>> round(spa_speedup_reward(2.0, dead_zone=0.0), 4)
    0.6
    >>> spa_speedup_reward(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: a speedup must be positive and not NaN; got nan
    """
    _check_speedup(speedup)
    if speedup < 1.0 - dead_zone:
        return math.tanh(math.log(speedup / (1.0 - dead_zone)))
    if speedup > 1.0 + dead_zone:
        return math.tanh(math.log(speedup / (1.0 + dead_zone)))
    return 0.0


def pgars_gates(group: Sequence[Outcome], config: SpaRewardConfig = SpaRewardConfig()) -> PgarsGates:
    """SPA Eq. 2 over one rollout group: Γk = 1(ck / G ≥ τ) for k ∈ {syn, eq, plan}.

    >>> ok = Outcome(OutcomeStatus.FASTER, speedup=2.0)
    >>> bad = Outcome(OutcomeStatus.EXEC_ERROR)
    >>> pgars_gates([ok, bad, bad, bad])
    PgarsGates(syntax=False, equivalence=False, plan=False)
    >>> pgars_gates([ok, bad, bad, bad], SpaRewardConfig(gate_threshold=0.25))
    PgarsGates(syntax=True, equivalence=True, plan=True)
    >>> pgars_gates([ok, Outcome(OutcomeStatus.NOT_EQUIVALENT)])
    PgarsGates(syntax=True, equivalence=True, plan=True)
    >>> pgars_gates([ok, Outcome(OutcomeStatus.NOT_EQUIVALENT)], SpaRewardConfig(gate_threshold=0.75))
    PgarsGates(syntax=True, equivalence=False, plan=False)
    """
    if not group:
        raise ValueError("a PGARS gate needs a non-empty rollout group")
    reached = [spa_milestones(o, config) for o in group]
    size = len(reached)

    def gate(count: int) -> bool:
        return count / size >= config.gate_threshold

    return PgarsGates(
        syntax=gate(sum(m.syntax for m in reached)),
        equivalence=gate(sum(m.equivalence for m in reached)),
        plan=gate(sum(m.plan for m in reached)),
    )


def spa_reward_components(outcome: Outcome, config: SpaRewardConfig = SpaRewardConfig(),
                          gates: PgarsGates = ALL_GATES_OPEN) -> dict[str, float]:
    """The terms of SPA Eq. 3 for one rollout, for logging: `syntax`, `equivalence`, `plan`,
    `speedup` and their sum `total`.

    r = 1syn·Rsyn + Γsyn·1eq·Req + Γsyn·Γeq·1plan·Rplan + Γsyn·Γeq·Γplan·Rs(S).
    S is only measured for equivalent, plan-divergent candidates (§3.4, "SPA only proceeds to runtime
    speedup measurement when a nontrivial plan divergence is detected"); for every other candidate
    there is no S and the speedup term is 0. Failures earn nothing (Eq. 3 has no penalty terms); they
    are pushed down by the group normalization of GRPO (Eq. 1).

    >>> from sidecar.verify import Evidence
    >>> spa_reward_components(Outcome(OutcomeStatus.EXEC_ERROR))
    {'syntax': 0.0, 'equivalence': 0.0, 'plan': 0.0, 'speedup': 0.0, 'total': 0.0}
    >>> c = spa_reward_components(Outcome(OutcomeStatus.FASTER, speedup=2.2,
    ...                                   evidence=Evidence(edit_distance=0.3, plan_changed=True)))
    >>> {k: round(v, 4) for k, v in c.items()}
    {'syntax': 1.0, 'equivalence': 1.0, 'plan': 1.0, 'speedup': 0.6, 'total': 3.6}
    >>> spa_reward_components(Outcome(OutcomeStatus.FASTER, speedup=2.2), gates=PgarsGates(equivalence=False))
    {'syntax': 1.0, 'equivalence': 1.0, 'plan': 0.0, 'speedup': 0.0, 'total': 2.0}
    """
    reached = spa_milestones(outcome, config)
    speedup = 0.0
    if reached.plan and outcome.status.timed:
        speedup = spa_speedup_reward(_measured_speedup(outcome), config.dead_zone)
    open_syn = gates.syntax
    open_eq = open_syn and gates.equivalence
    open_plan = open_eq and gates.plan
    parts = {
        "syntax": config.syntax_reward if reached.syntax else 0.0,
        "equivalence": config.equivalence_reward if open_syn and reached.equivalence else 0.0,
        "plan": config.plan_reward if open_eq and reached.plan else 0.0,
        "speedup": speedup if open_plan else 0.0,
    }
    parts["total"] = sum(parts.values())
    return parts


def spa_reward(outcome: Outcome, config: SpaRewardConfig = SpaRewardConfig(),
               gates: PgarsGates = ALL_GATES_OPEN) -> float:
    """r_i of SPA Eq. 3; pass `gates=pgars_gates(group)` for PGARS, or leave them open.

    >>> from sidecar.verify import Evidence
    >>> spa_reward(Outcome(OutcomeStatus.GUARD_REFUSED))
    0.0
    >>> spa_reward(Outcome(OutcomeStatus.UNVERIFIABLE)), spa_reward(Outcome(OutcomeStatus.NOT_EQUIVALENT))
    (1.0, 1.0)
    >>> spa_reward(Outcome(OutcomeStatus.TRIVIAL, evidence=Evidence(edit_distance=0.004, plan_changed=False)))
    1.0
    >>> spa_reward(Outcome(OutcomeStatus.EQUIVALENT, evidence=Evidence(edit_distance=0.3, plan_changed=False)))
    2.0
    >>> spa_reward(Outcome(OutcomeStatus.NO_CHANGE, speedup=1.05))  # inside the dead zone
    3.0
    >>> round(spa_reward(Outcome(OutcomeStatus.SLOWER, speedup=0.45)), 4)
    2.4
    """
    return spa_reward_components(outcome, config, gates)["total"]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_speedup(speedup: float) -> None:
    if math.isnan(speedup) or speedup <= 0.0:
        raise ValueError(f"a speedup must be positive and not NaN; got {speedup}")


def _measured_speedup(outcome: Outcome) -> float:
    """The speedup of a timed outcome; a timed status without one is a verifier bug, not a zero."""
    speedup = outcome.speedup
    if math.isnan(speedup) or speedup <= 0.0:
        raise ValueError(f"a {outcome.status.value!r} outcome must carry a positive speedup; got {speedup}")
    return speedup


def _textually_nontrivial(outcome: Outcome, config: SpaRewardConfig) -> bool:
    if outcome.status is OutcomeStatus.TRIVIAL:
        return False  # the verifier's own text filter said so
    distance = outcome.evidence.edit_distance
    if distance is not None and math.isfinite(distance):
        return distance >= config.min_edit_distance
    return outcome.status.equivalent  # only candidates past the verifier's text filter are compared


def _plan_changed(outcome: Outcome) -> bool:
    changed = outcome.evidence.plan_changed
    if changed is not None:
        return changed
    return outcome.status.timed  # only candidates with a changed plan are timed
