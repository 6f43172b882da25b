"""SQL-GRPO's group maths against hand-computed values and LASER's Figure 4 scenarios."""
from __future__ import annotations

import math
import statistics

import pytest

from model.grpo.maths import (
    Pilot,
    allocate,
    anchor_terms,
    anchored_advantages,
    rollout_weights,
    zscore_advantages,
)
from model.rewards import LaserRewardConfig, laser_efficiency

RHO = LaserRewardConfig()
# Figure 4, scenario A: three syntax errors and one survivor that runs 35% slower than the original.
SURVIVOR = laser_efficiency(1 / 1.35)
SCENARIO_A = [RHO.execution_penalty, RHO.execution_penalty, RHO.execution_penalty, SURVIVOR]
# Scenario B: three equivalent rewrites about as fast as the original, and a genuine 2.6x win.
WIN = laser_efficiency(2.6)
SCENARIO_B = [laser_efficiency(0.82), laser_efficiency(1.0), laser_efficiency(0.9), WIN]


def test_the_rewards_of_the_scenarios() -> None:
    assert pytest.approx(math.tanh(math.log(1 / 1.35))) == SURVIVOR  # slower: F = tanh(log(T0/Tq)) < 0
    assert pytest.approx(3 * math.tanh(math.log(2.6))) == WIN  # faster: η = 3


def test_standard_grpo_gives_the_survivor_and_the_win_the_same_advantage() -> None:
    survivor = zscore_advantages(SCENARIO_A)[-1]
    win = zscore_advantages(SCENARIO_B)[-1]
    # One outlier among three equal rewards: z = √3 whatever the rewards are (Figure 4b's false parity).
    assert survivor == pytest.approx(math.sqrt(3), rel=1e-5)
    assert win == pytest.approx(survivor, rel=0.02)


def test_anchored_advantage_separates_the_genuine_win_from_the_mediocre_survivor() -> None:
    # Figure 4c, in the anchor terms: the survivor is held down (its reward is below b = 0), the win lifted.
    survivor_anchor, win_anchor = anchor_terms(SCENARIO_A)[-1], anchor_terms(SCENARIO_B)[-1]
    assert survivor_anchor < 0.8 and win_anchor > 2 * survivor_anchor  # 0.77 and 1.61 by hand
    # After the centring (Eq. 10 as printed) b cancels: the win still ranks above the survivor, and the
    # survivor's inflated z-score is damped, but by less than the anchor terms suggest.
    survivor, win = anchored_advantages(SCENARIO_A)[-1], anchored_advantages(SCENARIO_B)[-1]
    assert win > survivor
    assert survivor < zscore_advantages(SCENARIO_A)[-1] - 0.3


@pytest.mark.parametrize("rewards", [SCENARIO_A, SCENARIO_B, [-3.0, 1.0, 2.5], [0.4], [-1.5, -1.5]])
@pytest.mark.parametrize("mix", [0.0, 0.5, 1.0])
def test_anchored_advantage_matches_its_closed_form_and_is_centred(rewards: list[float], mix: float) -> None:
    size, mean = len(rewards), statistics.fmean(rewards)
    spread = statistics.pstdev(rewards)
    # Eq. 10 by hand: centring cancels the baseline b, leaving (1-λ)·z + λ·√G·(r-μ)/S.
    expected = [(1 - mix) * (r - mean) / (spread + 1e-6) + mix * math.sqrt(size) * (r - mean) / 3.0 for r in rewards]
    got = anchored_advantages(rewards, mix=mix, baseline=0.0, scale=3.0)
    assert got == pytest.approx(expected, abs=1e-9)
    assert sum(got) == pytest.approx(0.0, abs=1e-9)
    assert anchored_advantages(rewards, mix=mix, baseline=-7.0) == pytest.approx(got, abs=1e-9)


def test_mix_zero_is_standard_grpo() -> None:
    assert anchored_advantages(SCENARIO_B, mix=0.0) == pytest.approx(zscore_advantages(SCENARIO_B))


def test_rollout_weights_by_hand() -> None:
    pilots = [Pilot((-3.0, -2.5), 0.8), Pilot((-1.5, 2.0), 0.4), Pilot((1.0, 1.0), 0.2)]
    # variances 0.0625, 3.0625, 0; entropies / 0.8; failure only for the first (max -2.5 < ρsem = -1.5).
    assert rollout_weights(pilots) == pytest.approx([1 + 1.0 + 0.0625 / 3.0625, 0 + 0.5 + 1.0, 0 + 0.25 + 0.0])
    assert rollout_weights(pilots, alpha=2.0, beta=0.0, gamma=0.0) == [2.0, 0.0, 0.0]


def test_allocation_adds_up_follows_the_weights_and_respects_the_cap() -> None:
    weights = [3.0, 1.0, 0.0, 0.0]
    counts = allocate(weights, budget=32, pilot=2)
    assert sum(counts) == 32 and counts == [20, 8, 2, 2]  # 24 left: 18 and 6
    capped = allocate(weights, budget=32, pilot=2, max_per_prompt=12)
    assert sum(capped) == 32 and max(capped) == 12 and capped[:2] == [12, 12]  # the rest spread evenly
    assert allocate([1.0, 1.0, 1.0], budget=10, pilot=1) == [4, 3, 3]  # largest remainder, earliest first
    assert allocate([1.0], budget=3, pilot=2, max_per_prompt=2) == [2]  # a budget the cap cannot use


@pytest.mark.parametrize("call", [
    lambda: anchored_advantages([]), lambda: anchored_advantages([float("nan")]),
    lambda: anchored_advantages([1.0], mix=1.5), lambda: allocate([1.0, 1.0], budget=3, pilot=2),
    lambda: allocate([-1.0], budget=4, pilot=1), lambda: rollout_weights([Pilot((), 0.1)]),
    lambda: allocate([1.0], budget=4, pilot=2, max_per_prompt=1),
])
def test_bad_input_is_a_clear_error(call) -> None:
    with pytest.raises(ValueError):
        call()
