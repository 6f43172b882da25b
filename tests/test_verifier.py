"""The first verifier on the real demo database: each outcome, with its evidence."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from sidecar.verify import OutcomeStatus, ReadOnlySession, Verifier, VerifierConfig
from sidecar.verify.guard import GuardError
from sidecar.verify.verifier import OriginalError


@pytest.fixture(scope="module")
def verifier(cluster) -> Iterator[Verifier]:
    session = ReadOnlySession.connect(cluster.dsn("laser_demo", "shop"), None, statement_timeout_ms=20_000)
    with session:
        yield Verifier(session, VerifierConfig(statement_timeout_ms=20_000))


CASES = [
    ("guard refused", "SELECT id FROM users", "DELETE FROM users", OutcomeStatus.GUARD_REFUSED, "got DELETE"),
    ("exec error", "SELECT id FROM users", "SELECT nope FROM users", OutcomeStatus.EXEC_ERROR, "nope"),
    ("column count", "SELECT id FROM users", "SELECT id, email FROM users", OutcomeStatus.SHAPE_MISMATCH,
     "returns 2 columns"),
    ("column name", "SELECT id FROM users", "SELECT id AS user_id FROM users", OutcomeStatus.SHAPE_MISMATCH,
     "named 'user_id'"),
    ("column type", "SELECT id FROM users", "SELECT id::bigint AS id FROM users", OutcomeStatus.SHAPE_MISMATCH,
     "type oid"),
    ("rows differ", "SELECT id FROM users WHERE id < 10", "SELECT id FROM users WHERE id < 9",
     OutcomeStatus.NOT_EQUIVALENT, "row counts differ"),
    ("duplicates matter", "SELECT country FROM users", "SELECT DISTINCT country FROM users",
     OutcomeStatus.NOT_EQUIVALENT, "row counts differ"),
    ("order fixed by ORDER BY", "SELECT id FROM users WHERE id < 50 ORDER BY id",
     "SELECT id FROM users WHERE id < 50 ORDER BY id DESC", OutcomeStatus.NOT_EQUIVALENT, "different order"),
    ("LIMIT over ties, different rows: unverifiable", "SELECT id FROM users LIMIT 5",
     "SELECT id FROM users ORDER BY id DESC LIMIT 5",
     OutcomeStatus.UNVERIFIABLE, "LIMIT"),
    ("LIMIT over group keys in the ORDER BY is compared",
     "SELECT country, count(*) AS n FROM users GROUP BY country ORDER BY n DESC, country LIMIT 3",
     "SELECT country, count(*) AS n FROM users GROUP BY country ORDER BY count(*) DESC, 1 LIMIT 2",
     OutcomeStatus.NOT_EQUIVALENT, "row counts differ"),
    ("LIMIT not reached is compared", "SELECT id FROM users WHERE id < 5 ORDER BY email LIMIT 10",
     "SELECT id FROM users WHERE id < 4 ORDER BY email LIMIT 10", OutcomeStatus.NOT_EQUIVALENT,
     "row counts differ"),
    ("whitespace only", "SELECT id FROM users WHERE id < 10", "SELECT  id  FROM users WHERE id < 10",
     OutcomeStatus.TRIVIAL, "near-identical"),
]


@pytest.mark.parametrize(("original", "candidate", "status", "detail"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_outcomes(verifier: Verifier, original: str, candidate: str, status: OutcomeStatus, detail: str) -> None:
    outcome = verifier.verify(verifier.prepare(original), candidate)
    assert outcome.status is status, outcome
    assert detail in outcome.detail


def test_floats_compare_within_tolerance(verifier: Verifier) -> None:
    outcome = verifier.verify(verifier.prepare("SELECT 0.1::float8 + 0.2::float8 AS x FROM users WHERE id = 1"),
                              "SELECT 0.3::float8 AS x FROM users WHERE id = 1")
    assert outcome.equivalent, outcome


def test_tied_order_keys_may_permute(verifier: Verifier) -> None:
    original = "SELECT country, id FROM users WHERE id < 200 ORDER BY country"
    candidate = "SELECT country, id FROM users WHERE id < 200 ORDER BY country, id DESC"
    outcome = verifier.verify(verifier.prepare(original), candidate)
    assert outcome.equivalent, outcome


def test_faster_rewrite_is_measured(verifier: Verifier) -> None:
    original = "SELECT count(*) AS n FROM orders WHERE created_at::date = DATE '2024-03-01'"
    candidate = ("SELECT count(*) AS n FROM orders WHERE created_at >= DATE '2024-03-01' "
                 "AND created_at < DATE '2024-03-02'")
    outcome = verifier.verify(verifier.prepare(original), candidate)
    assert outcome.status is OutcomeStatus.FASTER, outcome
    assert outcome.speedup >= 1.1
    evidence = outcome.evidence
    assert evidence.latencies is not None
    assert len(evidence.latencies.original) == len(evidence.latencies.candidate) == 3
    assert evidence.plan_changed is True
    assert evidence.plan_after is not None and "orders_created_at_idx" in evidence.plan_after
    assert evidence.equivalence is not None
    assert evidence.equivalence.original_hash == evidence.equivalence.candidate_hash


def test_slow_candidate_is_cut_off_and_slower(verifier: Verifier) -> None:
    """A candidate that finishes for the result check (within half the statement timeout) but takes
    seconds where the original takes milliseconds: each timed run is cut at the candidate cap
    (4x the original's warm-up, at least 1 s), counted at the cap, and the verdict is slower."""
    original = "SELECT count(*) AS n FROM users WHERE id < 30"
    candidate = ("SELECT count(*) AS n FROM users u WHERE id < 30 AND "
                 "(SELECT count(*) FROM events e WHERE e.session_id >= 0 AND u.id > 0) >= 0")
    outcome = verifier.verify(verifier.prepare(original), candidate)
    assert outcome.status is OutcomeStatus.SLOWER, outcome
    latencies = outcome.evidence.latencies
    assert latencies is not None and latencies.candidate_cap_ms == 1000
    assert latencies.candidate_timeouts == 3 and latencies.candidate == (1000.0, 1000.0, 1000.0)
    assert "hit its 1000 ms cap 3 time(s)" in outcome.detail


def test_original_that_does_not_run_is_an_error(verifier: Verifier) -> None:
    with pytest.raises(OriginalError, match="does not exist"):
        verifier.prepare("SELECT * FROM no_such_table")
    with pytest.raises(GuardError):
        verifier.prepare("UPDATE users SET name = name")
