"""Speed: interleaved timed runs, medians, and the dead zone around "no change" (SPA delta)."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

Verdict = Literal["faster", "no_change", "slower"]


def median_ms(samples: Sequence[float]) -> float:
    """Median of the timed runs.

    >>> median_ms([30.0, 10.0, 20.0])
    20.0
    """
    return float(statistics.median(samples)) if samples else 0.0


def spread_ms(samples: Sequence[float]) -> float:
    """Max minus min of the timed runs: how noisy the measurement was.

    >>> spread_ms([30.0, 10.0, 20.0])
    20.0
    """
    return float(max(samples) - min(samples)) if samples else 0.0


def speedup(original_ms: float, candidate_ms: float) -> float:
    """T(Q) / T(R); a candidate that took no measurable time counts as 1 µs.

    >>> speedup(100.0, 25.0)
    4.0
    """
    return original_ms / max(candidate_ms, 0.001)


def classify(ratio: float, dead_zone: float = 0.10) -> Verdict:
    """Faster / slower only beyond the dead zone: within 1 ± `dead_zone` is "no change".

    >>> classify(1.05), classify(1.2), classify(0.85)
    ('no_change', 'faster', 'slower')
    """
    if ratio >= 1.0 + dead_zone:
        return "faster"
    if ratio <= 1.0 / (1.0 + dead_zone):
        return "slower"
    return "no_change"


def separated(original_ms: Sequence[float], candidate_ms: Sequence[float]) -> bool:
    """Every timed run of the candidate beat every timed run of the original.

    A median ratio beyond the dead zone is not enough on its own when the runs overlap: at a
    millisecond or less, noise moves single runs by more than the dead zone.

    >>> separated([10.0, 11.0, 12.0], [5.0, 6.0, 9.0]), separated([0.5, 0.4, 0.4], [0.3, 0.3, 0.6])
    (True, False)
    """
    return bool(original_ms) and bool(candidate_ms) and max(candidate_ms) < min(original_ms)
