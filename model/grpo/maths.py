"""SQL-GRPO's group maths (LASER §5.2), free of I/O and of torch: advantages and rollout budgets.

**Anchored Group Advantage** (Eq. 10). Standard GRPO scores a rollout by its z-score within its
group, which gives a mediocre survivor among syntax errors the same advantage as a genuine win
among equivalent rewrites (Figure 4). LASER mixes in an absolute term::

    A_anchor_i = (1 - λ) · (r_i - μ_G) / (σ_G + ε)  +  λ · (r_i - b) / (S / √G)
    A_i        = A_anchor_i - mean_j A_anchor_j

with b = 0 and S = 3 (the reward range of Eq. 7-8, §6.1.5) and λ weighted equally (0.5). Note
what the centring does: the absolute term's mean is λ·√G·(μ_G - b)/S, so after centring
``A_i = (1 - λ)·z_i + λ·√G·(r_i - μ_G)/S`` and b cancels. What the anchor changes is the *scale*:
a λ share of the advantage is measured against the fixed reward scale S instead of the group's
own spread, so a small absolute gap gets less than a large one, where the z-score gives one
outlier √(G-1) whatever the gap. The suppression Figure 4 describes (a survivor among syntax
errors kept low because its reward is still below b) is visible in the anchor terms before the
centring (``anchor_terms``); after it, the survivor's advantage is only damped, not suppressed,
since its gap to its failed group is large in absolute terms too. The functions below compute
Eq. 10 as printed; the tests check the closed form above and Figure 4's two scenarios.

**Complexity-Adaptive Dynamic Rollout** (Eq. 9). Every prompt first gets ``k_pilot`` rollouts;
its weight is ``W_i = α·I[max R_pilot < ρsem] + β·H̃_i + γ·σ̃²_i``: a failure indicator (no
pilot rollout got past execution), the normalized mean token entropy of its pilot rollouts, and
the normalized variance of their rewards, α = β = γ. The paper does not say how H and σ² are
normalized; here each is divided by its maximum over the batch (so both lie in [0, 1], and a
batch-wide constant does not move the allocation). The remaining budget is split in proportion
to W (largest remainders, so the counts add up exactly; evenly when every W is 0), never giving
one prompt more than ``max_per_prompt`` in all.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def zscore_advantages(rewards: Sequence[float], eps: float = 1e-6) -> list[float]:
    """Standard GRPO: (r_i - μ) / (σ + ε), σ the population standard deviation.

    >>> [round(a, 3) for a in zscore_advantages([-2.5, -2.5, -2.5, -0.3])]
    [-0.577, -0.577, -0.577, 1.732]
    >>> zscore_advantages([1.0, 1.0])
    [0.0, 0.0]
    """
    _check(rewards)
    mean = statistics.fmean(rewards)
    spread = statistics.pstdev(rewards)
    return [(r - mean) / (spread + eps) for r in rewards]


def anchor_terms(rewards: Sequence[float], mix: float = 0.5, baseline: float = 0.0, scale: float = 3.0,
                 eps: float = 1e-6) -> list[float]:
    """A_anchor of Eq. 10 before the centring: the λ-mix (``mix``) of the group z-score and the
    anchored term (r_i - b)/(S/√G). This is where Figure 4's effect lives: a survivor among
    errors keeps a low anchored term (its reward is still below b), a genuine win a high one.

    >>> [round(a, 3) for a in anchor_terms([-2.5, -2.5, -2.5, -0.3])]
    [-1.122, -1.122, -1.122, 0.766]
    """
    _check(rewards)
    if not 0.0 <= mix <= 1.0 or scale <= 0.0:
        raise ValueError("mix must be in [0, 1] and scale positive")
    size = len(rewards)
    relative = zscore_advantages(rewards, eps)
    return [(1.0 - mix) * z + mix * (r - baseline) / (scale / math.sqrt(size))
            for z, r in zip(relative, rewards, strict=True)]


def anchored_advantages(rewards: Sequence[float], mix: float = 0.5, baseline: float = 0.0, scale: float = 3.0,
                        eps: float = 1e-6) -> list[float]:
    """LASER Eq. 10: the anchor terms, centred over the group (the zero-sum step).

    >>> [round(a, 3) for a in anchored_advantages([-2.5, -2.5, -2.5, -0.3])]
    [-0.472, -0.472, -0.472, 1.416]
    >>> [round(a, 3) for a in anchored_advantages([-0.2, 0.0, -0.1, 2.9])]
    [-0.61, -0.466, -0.538, 1.615]
    >>> round(sum(anchored_advantages([-3.0, 1.0, 2.5])), 12)
    0.0
    """
    anchored = anchor_terms(rewards, mix, baseline, scale, eps)
    centre = statistics.fmean(anchored)
    return [a - centre for a in anchored]


@dataclass(frozen=True)
class Pilot:
    """What the pilot phase learned about one prompt."""

    rewards: tuple[float, ...]
    """The rewards of its k_pilot rollouts."""
    entropy: float
    """The mean token-level entropy of those rollouts (nats)."""


def rollout_weights(pilots: Sequence[Pilot], rho_sem: float = -1.5, alpha: float = 1.0, beta: float = 1.0,
                    gamma: float = 1.0) -> list[float]:
    """Eq. 9's W_i for each prompt.

    >>> pilots = [Pilot((-3.0, -2.5), 0.4), Pilot((1.0, 2.9), 0.2), Pilot((0.5, 0.5), 0.0)]
    >>> [round(w, 3) for w in rollout_weights(pilots)]
    [2.069, 1.5, 0.0]
    """
    if not pilots or any(not p.rewards for p in pilots):
        raise ValueError("every prompt needs at least one pilot reward")
    if any(p.entropy < 0 or not math.isfinite(p.entropy) for p in pilots):
        raise ValueError("entropies must be finite and non-negative")
    variances = [statistics.pvariance(p.rewards) for p in pilots]
    top_entropy = max(p.entropy for p in pilots)
    top_variance = max(variances)
    weights = []
    for pilot, variance in zip(pilots, variances, strict=True):
        failed = 1.0 if max(pilot.rewards) < rho_sem else 0.0
        entropy = pilot.entropy / top_entropy if top_entropy > 0 else 0.0
        spread = variance / top_variance if top_variance > 0 else 0.0
        weights.append(alpha * failed + beta * entropy + gamma * spread)
    return weights


def allocate(weights: Sequence[float], budget: int, pilot: int, max_per_prompt: int | None = None) -> list[int]:
    """Rollouts per prompt in all: ``pilot`` each, and the rest of ``budget`` (the batch's total)
    in proportion to ``weights``.

    >>> allocate([2.069, 1.5, 0.0], budget=24, pilot=2)
    [12, 10, 2]
    >>> allocate([0.0, 0.0], budget=8, pilot=2)
    [4, 4]
    >>> allocate([5.0, 1.0], budget=12, pilot=2, max_per_prompt=6)
    [6, 6]
    """
    count = len(weights)
    if count == 0 or pilot < 1 or budget < pilot * count:
        raise ValueError("need at least one prompt, a pilot of at least 1, and a budget covering the pilots")
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise ValueError("weights must be finite and non-negative")
    cap = budget if max_per_prompt is None else max_per_prompt
    if cap < pilot:
        raise ValueError("max_per_prompt is below the pilot size")
    counts = [pilot] * count
    remaining = min(budget - pilot * count, (cap - pilot) * count)
    # Water-filling: share what is left by weight among prompts below the cap, until it is spent.
    while remaining > 0:
        open_ = [i for i in range(count) if counts[i] < cap]
        shares = [weights[i] for i in open_]
        total = sum(shares)
        if total <= 0:
            shares, total = [1.0] * len(open_), float(len(open_))
        exact = [remaining * s / total for s in shares]
        given = [min(math.floor(e), cap - counts[i]) for e, i in zip(exact, open_, strict=True)]
        left = remaining - sum(given)
        # Largest remainders first (ties to the earlier prompt), within the cap.
        order = sorted(range(len(open_)), key=lambda j: (-(exact[j] - math.floor(exact[j])), j))
        for j in order:
            if left == 0:
                break
            if counts[open_[j]] + given[j] < cap:
                given[j] += 1
                left -= 1
        for j, i in enumerate(open_):
            counts[i] += given[j]
        spent = sum(given)
        remaining -= spent
        if spent == 0:
            break
    return counts


def slow_rewrites(equivalent: Sequence[bool], speedups: Sequence[float], min_win: float = 1.1) -> list[int]:
    """SPA §3.6's mining over one rollout group: the indices of the rollouts that are verified
    equivalent but were measured slower than the original (C_slow: T(q̂) > T(q), a speedup below 1;
    0 means not timed), kept only when another rollout of the group won by at least ``min_win``
    (the query can be optimized).

    >>> slow_rewrites([True, True, False, True], [2.0, 0.6, 0.0, 0.95])
    [1, 3]
    >>> slow_rewrites([True, True], [1.05, 0.6])  # no win in the group: the query may not be optimizable
    []
    >>> slow_rewrites([True, False], [1.5, 0.5])  # a slower rewrite that is not equivalent is not mined
    []
    """
    if len(equivalent) != len(speedups):
        raise ValueError("one equivalence verdict per speedup")
    if not any(e and s >= min_win for e, s in zip(equivalent, speedups, strict=True)):
        return []
    return [i for i, (e, s) in enumerate(zip(equivalent, speedups, strict=True)) if e and 0.0 < s < 1.0]


def _check(rewards: Sequence[float]) -> None:
    if not rewards:
        raise ValueError("a group needs at least one reward")
    if any(not math.isfinite(r) for r in rewards):
        raise ValueError("rewards must be finite")
