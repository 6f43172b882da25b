"""Huge results stream through the verifier: refused past the row cap or compared by digest, in bounded memory.

Each measurement runs in its own process (laser.bench.memory), so its peak resident set is its own.
"""
from __future__ import annotations

import pytest

from laser.bench import memory
from laser.localdb import LocalCluster
from sidecar.verify import ReadOnlySession, Verifier, VerifierConfig
from sidecar.verify.outcome import OutcomeStatus

BOUND_MB = 100
"""Far below what holding the results takes (about 300 MB for the refused 10 million rows, 2.7 GB
for two compared million-row results before results streamed; `laser bench-memory`)."""


@pytest.fixture(scope="module")
def dsn(cluster: LocalCluster) -> str:
    return cluster.dsn()


def test_ten_million_rows_are_refused_in_bounded_memory(dsn: str) -> None:
    measured = memory.measure_apart("refuse", dsn, 10_000_000, trace=False)
    assert measured["verdict"] == "refused: more than 1000000 rows", measured
    assert measured["peak_rss_growth_mb"] < BOUND_MB, measured


def test_large_results_are_compared_by_digest_in_bounded_memory(dsn: str) -> None:
    measured = memory.measure_apart("compare", dsn, 200_000, trace=False)
    assert measured["verdict"].startswith("equivalent"), measured
    assert measured["peak_rss_growth_mb"] < BOUND_MB, measured


def test_large_results_that_differ_are_told_apart(dsn: str) -> None:
    with ReadOnlySession.connect(dsn, None, keep_rows=1_000) as session:
        verifier = Verifier(session, VerifierConfig(perturbed_instances=False))
        profile = verifier.prepare(memory.series(5_000))
        assert profile.warmup.rows is None and profile.warmup.row_count == 5_000  # only the digest is kept
        one_off = memory.series(5_000).replace("md5(i::text)", "md5((i + (i = 4321)::int)::text)")
        outcome = verifier.check_equivalence(profile, one_off)
        assert outcome.status is OutcomeStatus.NOT_EQUIVALENT, outcome
        assert "compared by hash" in outcome.detail
        ordered = verifier.prepare(memory.series(5_000, descending=True))
        reordered = verifier.check_equivalence(ordered, memory.series(5_000))
        assert reordered.status is OutcomeStatus.NOT_EQUIVALENT, reordered
        assert "different order" in reordered.detail
        # Still usable after a refusal: the cancelled query left nothing behind.
        small = ReadOnlySession(session.connection, None, max_rows=10)
        assert small.run(memory.series(11)).too_many_rows
        assert small.run_many([memory.series(11), "SELECT 1"])[1].rows == [(1,)]
