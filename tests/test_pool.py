"""The parallel verification pool: many candidates at once, each worker with its own session."""
from __future__ import annotations

from pathlib import Path

from laser.bench.pairs import load_pairs
from laser.bench.verifier import ensure_fixture_database
from laser.localdb import LocalCluster
from model.pool import Job, VerifierPool, outcome_counts
from sidecar.verify import OutcomeStatus, VerifierConfig

PAIRS = Path(__file__).resolve().parent.parent / "sql" / "verifier"


def test_pool_verifies_in_parallel_and_keeps_job_order(demo_dsn: str) -> None:
    jobs = [
        Job("SELECT id FROM users WHERE id < 100", "SELECT id FROM users WHERE id <= 99"),
        Job("SELECT id FROM users WHERE id < 100", "SELECT id FROM users WHERE id < 99"),
        Job("SELECT id FROM users WHERE id < 100", "DELETE FROM users"),
        Job("SELECT nope FROM users", "SELECT id FROM users"),
        Job("SELECT count(*) AS n FROM orders o WHERE o.user_id = $1",
            "SELECT count(o.id) AS n FROM orders o WHERE o.user_id = $1"),
        Job("SELECT count(*) AS n FROM orders o WHERE o.user_id = $1",
            "SELECT count(*) AS n FROM orders o WHERE o.user_id = $1 + 1",
            values=((1, "7"),)),
    ]
    config = VerifierConfig(statement_timeout_ms=20_000, timed_runs=1)
    with VerifierPool(demo_dsn, workers=2, config=config) as pool:
        outcomes = pool.verify_many(jobs)
    statuses = [o.status for o in outcomes]
    assert statuses[0].equivalent
    assert statuses[1] == OutcomeStatus.NOT_EQUIVALENT
    assert statuses[2] == OutcomeStatus.GUARD_REFUSED
    assert statuses[3] == OutcomeStatus.UNVERIFIABLE and "does not run" in outcomes[3].detail
    assert statuses[4].equivalent
    assert statuses[5] == OutcomeStatus.NOT_EQUIVALENT
    assert sum(outcome_counts(outcomes).values()) == len(jobs)


def test_pool_agrees_with_the_fixture_pairs(cluster: LocalCluster) -> None:
    """Same verdicts with 3 workers as the sequential acceptance test (fixture database)."""
    dsn = ensure_fixture_database(cluster)
    pairs = load_pairs(PAIRS / "not_equivalent.sql")[:12] + load_pairs(PAIRS / "equivalent.sql")[:12]
    with VerifierPool(dsn, workers=3, config=VerifierConfig(timed_runs=1)) as pool:
        outcomes = pool.verify_many([Job(p.original, p.candidate) for p in pairs])
    for pair, outcome in zip(pairs, outcomes, strict=True):
        assert outcome.equivalent == (pair.expect == "equivalent"), (pair.name, outcome.detail)
