"""The benchmark's metric maths against values computed by hand (padding, percentiles, timeouts)."""
from __future__ import annotations

import math

import pytest

from laser.bench.metrics import Output, aggregate, distribution, percentile, summarize


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]  # sorted: 1 2 3 4 5
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 75) == 4.0
    assert percentile(values, 90) == pytest.approx(4.6)  # rank 3.6: 4 + 0.6 * (5 - 4)
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile(values, 100) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.2, 300.0], 95) == pytest.approx(0.2 + 0.95 * 299.8)


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_aggregate_mean_and_trimmed_mean() -> None:
    assert aggregate([1.0, 2.0, 6.0], trim=False) == 3.0
    # E3: five runs, the fastest and the slowest dropped: mean of 2, 3, 4
    assert aggregate([10.0, 2.0, 3.0, 4.0, 0.5], trim=True) == 3.0
    with pytest.raises(ValueError):
        aggregate([1.0, 2.0], trim=True)


def test_padding_of_invalid_and_non_equivalent_outputs() -> None:
    faster = Output(original_s=8.0, latency_s=2.0, valid=True, equivalent=True)
    invalid = Output(original_s=8.0, latency_s=None, valid=False, equivalent=None)
    wrong = Output(original_s=8.0, latency_s=0.1, valid=True, equivalent=False)
    unknown = Output(original_s=8.0, latency_s=0.1, valid=True, equivalent=None)
    assert faster.counted_s == 2.0 and faster.speedup == 4.0
    for padded in (invalid, wrong, unknown):
        assert padded.counted_s == 8.0 and padded.speedup == 1.0


def test_a_timed_out_rewrite_counts_at_the_cap_not_padded() -> None:
    output = Output(original_s=3.0, latency_s=30.0, valid=True, equivalent=None, timed_out=True)
    assert output.counted_s == 30.0
    assert output.speedup == pytest.approx(0.1)


def test_summary_by_hand() -> None:
    cap = 30.0
    outputs = [
        Output(10.0, 1.0, True, True),                  # 10x faster
        Output(4.0, 1.0, True, True),                   # 4x
        Output(2.0, 1.9, True, True),                   # 1.05x: inside the dead zone, not improved
        Output(1.0, 3.0, True, True),                   # 3x slower
        Output(5.0, None, False, None),                 # syntax error: padded 5.0
        Output(6.0, 0.5, True, False),                  # wrong result: padded 6.0
        Output(30.0, 30.0, True, True, timed_out=True, changed=False),  # original and output time out
        Output(0.5, 30.0, True, None, timed_out=True),  # the rewrite times out: 60x slower
    ]
    s = summarize(outputs, cap_s=cap)
    counted = [1.0, 1.0, 1.9, 3.0, 5.0, 6.0, 30.0, 30.0]
    assert s["queries"] == 8
    assert s["succ"] == round(7 / 8, 4)
    assert s["equiv"] == round(5 / 7, 4)  # among the 7 valid outputs, 5 are equivalent
    assert s["rewritten"] == 7
    assert s["mean"] == pytest.approx(sum(counted) / 8)
    ordered = sorted(counted)  # 1 1 1.9 3 5 6 30 30
    assert s["median"] == pytest.approx((3.0 + 5.0) / 2)
    assert s["p75"] == pytest.approx(ordered[5] + 0.25 * (ordered[6] - ordered[5]))  # rank 5.25
    assert s["p90"] == pytest.approx(30.0)  # rank 6.3, between two 30s
    assert s["p95"] == pytest.approx(30.0)
    assert s["improved"] == 2
    assert (s["spd_2x"], s["spd_4x"], s["spd_10x"]) == (2, 2, 1)
    assert (s["sld_2x"], s["sld_4x"], s["sld_10x"]) == (2, 1, 1)
    assert s["timeouts"] == 2
    assert s["rates"]["spd_2x"] == 0.25


def test_cap_censors_latencies() -> None:
    s = summarize([Output(500.0, 500.0, True, True, changed=False), Output(100.0, 10.0, True, True)], cap_s=300.0)
    assert s["mean"] == pytest.approx((300.0 + 10.0) / 2)
    assert s["spd_10x"] == 1


def test_distribution_and_empty_summary() -> None:
    d = distribution([0.5, 1.5])
    assert d["mean"] == 1.0 and d["median"] == 1.0 and d["max"] == 1.5
    assert distribution([])["median"] == 0.0
    with pytest.raises(ValueError):
        summarize([])
    assert math.isclose(Output(0.0, 0.0, True, True).speedup, 1.0)
