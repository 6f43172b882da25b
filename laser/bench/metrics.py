"""The papers' workload metrics, as pure functions of per-query measurements.

Definitions (LASER §6.1.4, SPA §4.1–4.4, E3 "Evaluation Metrics", QUITE §7.1), made exact here:

- Every query of a workload has an original latency and, per method, an output query: the method's
  rewrite, or the original itself when the method suggests none.
- **Padding**: an output that fails the syntax check (EXPLAIN) or is not shown result-equivalent to
  the original counts with the original's latency (SPA, QUITE). An output whose own execution hits
  the timeout counts with the cap, *not* padded: a suggestion that times out is a slowdown a user
  would suffer, whatever its results.
- **Timeouts** are censored at the cap (the papers' 300 s): latencies are `min(measured, cap)`.
- **Succ.**: fraction of queries whose output passes the syntax check. **Equiv.**: fraction of the
  syntactically valid outputs that are result-equivalent (SPA's definition); unknown equivalence
  counts as not equivalent. (When the original hits the cap, the runner decides equivalence on
  sampled and perturbed instances, QUITE's "smaller scale" recheck; see runner.py.)
- **Improved**: speedup ≥ 1.1 (beyond SPA's 10% dead zone); **Spd ≥ k×**: speedup ≥ k;
  **Sld ≥ k×**: padded latency ≥ k × the original's. Speedup = original / padded latency. Counts,
  with rates over all queries alongside.
- **Percentiles**: linear interpolation between closest ranks (NumPy's default, "type 7").
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IMPROVED_AT = 1.1
THRESHOLDS = (2, 4, 10)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 ≤ q ≤ 100), interpolating linearly between closest ranks.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10, 20, 30, 40, 50], 90)
    46.0
    >>> percentile([7], 95)
    7.0
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100]; got {q}")
    ordered = sorted(float(v) for v in values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def aggregate(samples: Sequence[float], trim: bool) -> float:
    """One latency from timed runs: the mean, or with `trim` the mean after dropping one minimum and
    one maximum (E3's five-run protocol).

    >>> aggregate([3.0, 1.0, 2.0], trim=False)
    2.0
    >>> aggregate([9.0, 1.0, 2.0, 3.0, 4.0], trim=True)
    3.0
    """
    if not samples:
        raise ValueError("no timed runs to aggregate")
    values = sorted(samples)
    if trim:
        if len(values) < 3:
            raise ValueError("dropping min and max needs at least three runs")
        values = values[1:-1]
    return sum(values) / len(values)


@dataclass(frozen=True)
class Output:
    """What one method produced for one query, as measured.

    `latency_s` is the measured (capped) latency of the output query, None when it could not run;
    `equivalent` is None when equivalence could not be decided.
    """

    original_s: float
    latency_s: float | None
    valid: bool
    equivalent: bool | None
    timed_out: bool = False
    changed: bool = True

    @property
    def counted_s(self) -> float:
        """The latency the metrics use (see the module docstring for padding)."""
        if self.valid and self.timed_out and self.latency_s is not None:
            return self.latency_s
        if not self.valid or self.equivalent is not True or self.latency_s is None:
            return self.original_s
        return self.latency_s

    @property
    def speedup(self) -> float:
        counted = self.counted_s
        if counted <= 0:
            return 1.0 if self.original_s <= 0 else math.inf
        return self.original_s / counted


def summarize(outputs: Sequence[Output], cap_s: float | None = None) -> dict[str, Any]:
    """The workload metrics for one method's outputs (one per query).

    Latencies in seconds; `cap_s`, when given, censors every latency at the timeout.

    >>> s = summarize([Output(10.0, 2.0, True, True), Output(4.0, 8.0, True, True),
    ...                Output(6.0, None, False, None), Output(1.0, 0.5, True, False)])
    >>> s["mean"], s["succ"], s["equiv"], s["improved"], s["spd_2x"], s["sld_2x"]
    (4.25, 0.75, 0.6667, 1, 1, 1)
    """
    if not outputs:
        raise ValueError("no queries to summarize")
    n = len(outputs)

    def capped(value: float) -> float:
        return min(value, cap_s) if cap_s is not None else value

    counted = [capped(o.counted_s) for o in outputs]
    speedups = [(capped(o.original_s) / c) if c > 0 else 1.0 for o, c in zip(outputs, counted, strict=True)]
    valid = [o for o in outputs if o.valid]
    equivalent = [o for o in valid if o.equivalent is True]
    summary: dict[str, Any] = {
        "queries": n,
        "succ": round(len(valid) / n, 4),
        "equiv": round(len(equivalent) / len(valid), 4) if valid else 0.0,
        "rewritten": sum(1 for o in outputs if o.changed),
        "mean": round(sum(counted) / n, 6),
        "median": round(percentile(counted, 50), 6),
        "p75": round(percentile(counted, 75), 6),
        "p90": round(percentile(counted, 90), 6),
        "p95": round(percentile(counted, 95), 6),
        "total": round(sum(counted), 6),
        "improved": sum(1 for s in speedups if s >= IMPROVED_AT),
        "timeouts": sum(1 for o in outputs if o.timed_out),
    }
    for k in THRESHOLDS:
        summary[f"spd_{k}x"] = sum(1 for s in speedups if s >= k)
        summary[f"sld_{k}x"] = sum(1 for s in speedups if s > 0 and 1.0 / s >= k)
    summary["rates"] = {key: round(summary[key] / n, 4)
                        for key in ("improved", *(f"{d}_{k}x" for d in ("spd", "sld") for k in THRESHOLDS))}
    return summary


def distribution(values: Sequence[float]) -> dict[str, float]:
    """Mean, median and tail of a list of durations (rewrite times), or zeros when empty.

    >>> distribution([1.0, 2.0, 3.0, 10.0])
    {'mean': 4.0, 'median': 2.5, 'p90': 7.9, 'max': 10.0}
    """
    if not values:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
    return {"mean": round(sum(values) / len(values), 6), "median": round(percentile(values, 50), 6),
            "p90": round(percentile(values, 90), 6), "max": round(max(values), 6)}


def verdict_mark(entry: dict[str, Any]) -> str:
    """Why a changed output was padded: it does not run, it differs, or its equivalence is unknown
    (the metrics count unknown as not equivalent; the per-query tables say which it was).

    >>> verdict_mark({"valid": True, "equivalent": None})
    ' (equivalence unknown)'
    >>> verdict_mark({"valid": True, "equivalent": False}), verdict_mark({"valid": False, "equivalent": None})
    (' (not equivalent)', ' (invalid)')
    """
    if not entry["valid"]:
        return " (invalid)"
    return " (equivalence unknown)" if entry["equivalent"] is None else " (not equivalent)"
