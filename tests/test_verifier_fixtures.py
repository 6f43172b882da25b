"""Acceptance: SQL-pair fixture files run against real PostgreSQL.

Every pair in sql/verifier/equivalent.sql must be verified equivalent; every pair in
not_equivalent.sql must be rejected with its reason — those marked `base: identical` return the
same rows on the base data, so only the perturbed instances can catch them.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from laser.bench.pairs import Pair, load_pairs
from laser.bench.verifier import ensure_fixture_database
from laser.localdb import LocalCluster
from sidecar.verify import OutcomeStatus, ReadOnlySession, Verifier, VerifierConfig

FIXTURES = Path(__file__).resolve().parent.parent / "sql" / "verifier"


EQUIVALENT = load_pairs(FIXTURES / "equivalent.sql")
NOT_EQUIVALENT = load_pairs(FIXTURES / "not_equivalent.sql")


def test_fixture_files_are_large_enough() -> None:
    assert len(EQUIVALENT) >= 25
    assert len(NOT_EQUIVALENT) >= 25
    assert sum(p.base == "identical" for p in NOT_EQUIVALENT) >= 10
    assert {p.expect for p in EQUIVALENT} == {"equivalent"}
    assert {p.expect for p in NOT_EQUIVALENT} <= {"not_equivalent", "shape_mismatch"}


@pytest.fixture(scope="module")
def fixtures_dsn(cluster: LocalCluster) -> str:
    return ensure_fixture_database(cluster, reload=True)


@pytest.fixture(scope="module")
def verifier(fixtures_dsn: str) -> Iterator[Verifier]:
    with ReadOnlySession.connect(fixtures_dsn, None, statement_timeout_ms=20_000) as session:
        yield Verifier(session, VerifierConfig(statement_timeout_ms=20_000, timed_runs=1))


@pytest.mark.parametrize("pair", EQUIVALENT, ids=[p.name for p in EQUIVALENT])
def test_equivalent_pair_is_verified(verifier: Verifier, pair: Pair) -> None:
    outcome = verifier.verify(verifier.prepare(pair.original), pair.candidate)
    assert outcome.equivalent, (f"{pair.name} ({pair.why}): {outcome.status.value}: {outcome.detail}\n"
                                f"{outcome.counterexample}")
    tried = outcome.evidence.perturbed_instances
    assert tried is not None and not tried.skipped, tried
    assert len(tried.tried) >= 5


@pytest.mark.parametrize("pair", NOT_EQUIVALENT, ids=[p.name for p in NOT_EQUIVALENT])
def test_not_equivalent_pair_is_rejected_with_its_reason(verifier: Verifier, pair: Pair) -> None:
    outcome = verifier.verify(verifier.prepare(pair.original), pair.candidate)
    assert outcome.status == OutcomeStatus(pair.expect), f"{pair.name} ({pair.why}): {outcome.detail}"
    assert outcome.detail
    if pair.expect == "not_equivalent":
        assert outcome.counterexample is not None
        on_live_data = outcome.counterexample["instance"] == "live data"
        assert on_live_data == (pair.base == "different"), (pair.name, outcome.counterexample["instance"])
        if not on_live_data:
            # The counterexample is an instance of the schema, small enough to read.
            tables = outcome.counterexample["tables"]
            assert sum(t["row_count"] for t in tables.values()) <= 40, tables
