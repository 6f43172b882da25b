"""Properties of the LASER and SPA rewards (no database: they are pure functions of an Outcome)."""
from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from model.rewards import (
    LASER_TIERS,
    LaserRewardConfig,
    LaserTier,
    PgarsGates,
    SpaRewardConfig,
    laser_efficiency,
    laser_reward,
    laser_reward_components,
    pgars_gates,
    spa_milestones,
    spa_reward,
    spa_reward_components,
    spa_speedup_reward,
)
from sidecar.verify import Evidence
from sidecar.verify.outcome import Outcome, OutcomeStatus

S = OutcomeStatus
SPEEDUPS = [0.01, 0.1, 0.3, 0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5, 2.0, 4.0, 10.0, 100.0, 1e6]
FAILURES = [S.EXTRACTION_FAIL, S.GUARD_REFUSED, S.EXEC_ERROR, S.SHAPE_MISMATCH, S.NOT_EQUIVALENT,
            S.UNVERIFIABLE]
EQUIVALENT_EVIDENCE: dict[str, Any] = {"edit_distance": 0.25, "plan_changed": True}


def evidence(**facts: Any) -> Evidence:
    return Evidence(**{**EQUIVALENT_EVIDENCE, **facts})


def timed(speedup: float, **facts: Any) -> Outcome:
    """A verified-equivalent, timed outcome, with the status the verifier would give it."""
    status = S.FASTER if speedup >= 1.1 else S.SLOWER if speedup <= 1 / 1.1 else S.NO_CHANGE
    return Outcome(status, speedup=speedup, evidence=evidence(**facts))


def is_sorted(values: list[float], strict: bool = False) -> bool:
    pairs = list(itertools.pairwise(values))
    return all(a < b for a, b in pairs) if strict else all(a <= b for a, b in pairs)


# ---------------------------------------------------------------------------------------------
# LASER
# ---------------------------------------------------------------------------------------------


def test_every_status_has_a_laser_tier() -> None:
    assert set(LASER_TIERS) == set(OutcomeStatus)
    for status, tier in LASER_TIERS.items():
        if status is S.TRIVIAL:  # not executed, but scored as the copy of the original it nearly is
            assert tier is LaserTier.SUCCESS and not status.equivalent
            continue
        assert (tier is LaserTier.SUCCESS) == status.equivalent, status


def test_laser_penalties_follow_eq7_with_the_paper_values() -> None:
    assert laser_reward(Outcome(S.EXTRACTION_FAIL)) == -3.0
    assert laser_reward(Outcome(S.GUARD_REFUSED)) == -2.5
    assert laser_reward(Outcome(S.EXEC_ERROR)) == -2.5
    for status in (S.SHAPE_MISMATCH, S.NOT_EQUIVALENT, S.UNVERIFIABLE):
        assert laser_reward(Outcome(status)) == -1.5


def test_laser_penalties_ignore_any_speedup_a_failure_carries() -> None:
    for status in FAILURES:
        assert laser_reward(Outcome(status, speedup=50.0)) == laser_reward(Outcome(status))


def test_laser_failure_ordering_is_strict_and_below_every_success() -> None:
    tiers = [laser_reward(Outcome(s)) for s in (S.EXTRACTION_FAIL, S.EXEC_ERROR, S.NOT_EQUIVALENT)]
    assert is_sorted(tiers, strict=True)
    worst_success = min(laser_reward(timed(s)) for s in SPEEDUPS)
    assert max(laser_reward(Outcome(s)) for s in FAILURES) < worst_success


def test_laser_efficiency_matches_eq8() -> None:
    for s in SPEEDUPS:
        expected = math.tanh(math.log(s)) * (3.0 if s > 1 else 1.0)
        assert laser_reward(timed(s)) == pytest.approx(expected)
    assert laser_efficiency(2.0) == pytest.approx(3 * 0.6)
    assert laser_efficiency(0.5) == pytest.approx(-0.6)


def test_laser_reward_is_monotone_in_speedup_and_bounded() -> None:
    rewards = [laser_reward(timed(s)) for s in SPEEDUPS]
    assert is_sorted(rewards, strict=True)
    assert all(-1.0 < r < 3.0 for r in rewards)
    assert laser_efficiency(1.0) == 0.0
    assert laser_efficiency(1.0 + 1e-9) == pytest.approx(0.0, abs=1e-8)  # continuous at S = 1
    assert laser_efficiency(1.0 - 1e-9) == pytest.approx(0.0, abs=1e-8)


def test_laser_speedups_are_amplified_by_eta_and_slowdowns_are_not() -> None:
    for s in (1.5, 2.0, 4.0):
        assert laser_efficiency(s) == pytest.approx(3.0 * -laser_efficiency(1 / s))
    config = LaserRewardConfig(speedup_bonus=1.5)
    assert laser_reward(timed(2.0), config) == pytest.approx(1.5 * 0.6)
    assert laser_reward(timed(0.5), config) == pytest.approx(-0.6)


def test_laser_has_no_dead_zone_and_scores_untimed_as_unchanged_latency() -> None:
    assert laser_reward(timed(1.05)) > 0.0
    assert laser_reward(timed(0.97)) < 0.0
    assert laser_reward(Outcome(S.TRIVIAL, "near-identical text: not executed")) == 0.0
    assert laser_reward(Outcome(S.EQUIVALENT, "the plan is unchanged", evidence=evidence(plan_changed=False))) == 0.0


def test_laser_components_sum_to_the_reward_and_name_one_branch() -> None:
    for outcome in [Outcome(s) for s in FAILURES] + [Outcome(S.TRIVIAL), Outcome(S.EQUIVALENT)] \
            + [timed(s) for s in SPEEDUPS]:
        parts = laser_reward_components(outcome)
        assert set(parts) == {"format", "execution", "semantic", "efficiency", "total"}
        assert parts["total"] == pytest.approx(laser_reward(outcome))
        assert sum(1 for k, v in parts.items() if k != "total" and v != 0.0) <= 1
        assert all(isinstance(v, float) for v in parts.values())


def test_laser_custom_penalties_are_used() -> None:
    config = LaserRewardConfig(format_penalty=-10, execution_penalty=-5, semantic_penalty=-1, speedup_bonus=2)
    assert [laser_reward(Outcome(s), config) for s in (S.EXTRACTION_FAIL, S.EXEC_ERROR, S.UNVERIFIABLE)] \
        == [-10, -5, -1]


@pytest.mark.parametrize("kwargs", [
    {"format_penalty": -2.0},                       # not below ρexe
    {"execution_penalty": -1.0},                    # not below ρsem
    {"semantic_penalty": 0.0},                      # not negative
    {"speedup_bonus": 1.0},                         # η must exceed 1
    {"speedup_bonus": float("inf")},
    {"format_penalty": float("nan")},
])
def test_laser_config_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LaserRewardConfig(**kwargs)


@pytest.mark.parametrize("speedup", [0.0, -1.0, float("nan")])
def test_a_timed_outcome_without_a_speedup_is_an_error(speedup: float) -> None:
    outcome = Outcome(S.FASTER, speedup=speedup, evidence=evidence())
    with pytest.raises(ValueError, match="positive speedup"):
        laser_reward(outcome)
    with pytest.raises(ValueError, match="positive speedup"):
        spa_reward(outcome)


# ---------------------------------------------------------------------------------------------
# SPA
# ---------------------------------------------------------------------------------------------


def test_spa_speedup_reward_has_the_paper_shape() -> None:
    delta = 0.1
    for s in SPEEDUPS:
        if s < 1 - delta:
            expected = math.tanh(math.log(s / (1 - delta)))
        elif s > 1 + delta:
            expected = math.tanh(math.log(s / (1 + delta)))
        else:
            expected = 0.0
        assert spa_speedup_reward(s) == pytest.approx(expected)
    rewards = [spa_speedup_reward(s) for s in SPEEDUPS]
    assert is_sorted(rewards)
    assert all(-1.0 < r < 1.0 for r in rewards)


def test_spa_dead_zone_is_neutral_and_continuous_at_its_edges() -> None:
    for s in (0.9, 0.95, 1.0, 1.05, 1.1):
        assert spa_speedup_reward(s) == 0.0
    assert spa_speedup_reward(1.1 + 1e-9) == pytest.approx(0.0, abs=1e-8)
    assert spa_speedup_reward(0.9 - 1e-9) == pytest.approx(0.0, abs=1e-8)
    assert spa_speedup_reward(1.3, dead_zone=0.5) == 0.0
    assert spa_speedup_reward(1.3, dead_zone=0.0) > 0.0


def test_spa_milestones_are_cumulative_and_follow_the_status() -> None:
    outcomes = [Outcome(s, evidence=evidence()) for s in FAILURES]
    outcomes += [Outcome(status, evidence=Evidence(edit_distance=d, plan_changed=p))
                 for status in (S.TRIVIAL, S.EQUIVALENT) for d in (0.0, 0.3) for p in (False, True)]
    outcomes += [timed(s) for s in SPEEDUPS]
    for outcome in outcomes:
        m = spa_milestones(outcome)
        assert m.syntax >= m.equivalence >= m.plan, outcome
        assert m.syntax == (outcome.status not in (S.EXTRACTION_FAIL, S.GUARD_REFUSED, S.EXEC_ERROR))
        if not outcome.equivalent:
            assert not m.equivalence


def test_spa_trivial_and_untimed_never_get_a_speedup_reward() -> None:
    for d in (0.0, 0.005, 0.3, None):
        for p in (False, True, None):
            facts = Evidence(edit_distance=d, plan_changed=p)
            trivial = spa_reward_components(Outcome(S.TRIVIAL, evidence=facts))
            assert trivial["equivalence"] == trivial["plan"] == trivial["speedup"] == 0.0, facts
            assert spa_reward_components(Outcome(S.EQUIVALENT, evidence=facts))["speedup"] == 0.0, facts


def test_spa_edit_distance_threshold_gates_the_equivalence_reward() -> None:
    below = spa_reward_components(timed(3.0, edit_distance=0.009))
    at = spa_reward_components(timed(3.0, edit_distance=0.01))
    assert below == {"syntax": 1.0, "equivalence": 0.0, "plan": 0.0, "speedup": 0.0, "total": 1.0}
    assert at["equivalence"] == 1.0 and at["speedup"] > 0.0
    stricter = SpaRewardConfig(min_edit_distance=0.5)
    assert spa_reward_components(timed(3.0, edit_distance=0.3), stricter)["equivalence"] == 0.0


def test_spa_unchanged_plan_gets_no_plan_or_speedup_reward() -> None:
    parts = spa_reward_components(timed(5.0, plan_changed=False))
    assert parts == {"syntax": 1.0, "equivalence": 1.0, "plan": 0.0, "speedup": 0.0, "total": 2.0}


def test_spa_is_robust_to_missing_evidence() -> None:
    assert spa_reward(Outcome(S.FASTER, speedup=2.2)) == pytest.approx(3.6)
    assert spa_reward(Outcome(S.FASTER, speedup=2.2, evidence=Evidence(edit_distance=float("nan")))) \
        == pytest.approx(3.6)
    assert spa_reward(Outcome(S.TRIVIAL)) == 1.0  # runs, but near-identical: syntax only
    assert spa_reward(Outcome(S.EQUIVALENT)) == 2.0  # past the text filter, plan unknown: not changed
    assert spa_reward(Outcome(S.NOT_EQUIVALENT)) == 1.0


def test_spa_failure_ordering() -> None:
    fmt, refused, exe = (spa_reward(Outcome(s)) for s in (S.EXTRACTION_FAIL, S.GUARD_REFUSED, S.EXEC_ERROR))
    sem = [spa_reward(Outcome(s, evidence=evidence()))
           for s in (S.SHAPE_MISMATCH, S.NOT_EQUIVALENT, S.UNVERIFIABLE)]
    assert fmt == refused == exe == 0.0
    assert all(r == 1.0 for r in sem)
    trivial_text = spa_reward(Outcome(S.TRIVIAL, evidence=Evidence(edit_distance=0.0, plan_changed=False)))
    trivial_plan = spa_reward(Outcome(S.EQUIVALENT, evidence=Evidence(edit_distance=0.3, plan_changed=False)))
    assert exe < sem[0] <= trivial_text < trivial_plan
    # every measured equivalent, plan-changing rewrite is above a same-plan one: Rs > -1 = -Rplan
    assert all(spa_reward(timed(s)) > trivial_plan for s in SPEEDUPS)


def test_spa_reward_is_monotone_in_speedup() -> None:
    rewards = [spa_reward(timed(s)) for s in SPEEDUPS]
    assert is_sorted(rewards)
    assert rewards[-1] > rewards[SPEEDUPS.index(1.0)] > rewards[0]


def test_spa_components_sum_to_the_reward() -> None:
    for gates in (PgarsGates(), PgarsGates(syntax=False), PgarsGates(equivalence=False),
                  PgarsGates(plan=False)):
        for outcome in [Outcome(s) for s in FAILURES] + [timed(s) for s in SPEEDUPS]:
            parts = spa_reward_components(outcome, gates=gates)
            assert set(parts) == {"syntax", "equivalence", "plan", "speedup", "total"}
            assert parts["total"] == pytest.approx(spa_reward(outcome, gates=gates))
            assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))


def test_spa_gates_unlock_terms_as_in_eq3() -> None:
    outcome = timed(2.2)
    assert spa_reward(outcome, gates=PgarsGates(syntax=False, equivalence=False, plan=False)) == 1.0
    assert spa_reward(outcome, gates=PgarsGates(syntax=True, equivalence=False, plan=False)) == 2.0
    assert spa_reward(outcome, gates=PgarsGates(syntax=True, equivalence=True, plan=False)) == 3.0
    assert spa_reward(outcome, gates=PgarsGates()) == pytest.approx(3.6)
    # a closed lower gate keeps every higher term closed, whatever the higher gates say
    assert spa_reward(outcome, gates=PgarsGates(syntax=False, equivalence=True, plan=True)) == 1.0


def test_closing_gates_never_raises_a_non_negative_reward() -> None:
    for outcome in [timed(s) for s in SPEEDUPS if s > 1.1]:
        open_reward = spa_reward(outcome)
        for gates in (PgarsGates(syntax=False), PgarsGates(equivalence=False), PgarsGates(plan=False)):
            assert spa_reward(outcome, gates=gates) <= open_reward


def test_pgars_gates_follow_eq2_and_the_table1_example() -> None:
    # SPA Table 1: G = 8, τ = 25%: 6/8 syntax-valid opens Γsyn, 1/8 equivalent keeps Γeq closed.
    group = [timed(2.0)] + [Outcome(S.NOT_EQUIVALENT)] * 5 + [Outcome(S.EXEC_ERROR)] * 2
    gates = pgars_gates(group, SpaRewardConfig(gate_threshold=0.25))
    assert gates == PgarsGates(syntax=True, equivalence=False, plan=False)
    # the lone equivalent rollout then earns no plan or speedup reward
    parts = spa_reward_components(group[0], gates=gates)
    assert parts["plan"] == 0.0 and parts["speedup"] == 0.0 and parts["equivalence"] == 1.0
    # exactly at the threshold the gate opens (≥ τ)
    assert pgars_gates([timed(2.0), Outcome(S.NOT_EQUIVALENT)]).equivalence
    with pytest.raises(ValueError):
        pgars_gates([])


@pytest.mark.parametrize("kwargs", [
    {"syntax_reward": -1.0},
    {"plan_reward": float("nan")},
    {"dead_zone": 1.0},
    {"dead_zone": -0.1},
    {"min_edit_distance": 1.5},
    {"gate_threshold": 0.0},
    {"gate_threshold": 1.2},
])
def test_spa_config_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SpaRewardConfig(**kwargs)


def test_configs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        LaserRewardConfig().speedup_bonus = 5.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        SpaRewardConfig().dead_zone = 0.2  # type: ignore[misc]


def test_rewards_module_imports_only_the_standard_library_and_the_outcome() -> None:
    import ast
    import sys
    from pathlib import Path

    from model import rewards

    tree = ast.parse(Path(rewards.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            root = name.split(".")[0]
            assert name in ("sidecar.verify.outcome", "sidecar.verify.evidence") or root == "__future__" \
                or root in sys.stdlib_module_names, name
