"""Originals that do not finish within the cap: equivalence on instances, speed as a lower bound."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from laser.bench.runner import Protocol, ReplayMethod, Runner
from laser.bench.workloads import BenchQuery
from laser.localdb import LocalCluster
from sidecar.verify import OutcomeStatus, ReadOnlySession, Verifier, VerifierConfig

DB = "laser_beyond_cap_test"
CAP_MS = 400

# 300 customers x a scan of 300k orders per customer: far beyond the cap as written.
ORIGINAL = ("SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n "
            "FROM customers c WHERE c.region = 'north'")
EQUIVALENT = ("SELECT c.id, count(o.customer_id) AS n FROM customers c "
              "LEFT JOIN orders o ON o.customer_id = c.id WHERE c.region = 'north' GROUP BY c.id")
WRONG = ("SELECT c.id, count(*) AS n FROM customers c "
         "JOIN orders o ON o.customer_id = c.id WHERE c.region = 'north' GROUP BY c.id")


@pytest.fixture(scope="module")
def dsn(cluster: LocalCluster) -> Iterator[str]:
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}")
    with psycopg.connect(cluster.dsn(DB), autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount int NOT NULL)")
        conn.execute("INSERT INTO customers SELECT g, CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END "
                     "FROM generate_series(1, 600) g")
        # customers above 500 have no orders: an inner join loses them
        conn.execute("INSERT INTO orders SELECT g, 1 + g % 500, g % 97 FROM generate_series(1, 300000) g")
        conn.execute("ANALYZE")
    yield cluster.dsn(DB)
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB}")


def _verify(dsn: str, candidate: str, **config: object) -> tuple[object, dict[str, object], str]:
    with ReadOnlySession.connect(dsn, None, statement_timeout_ms=CAP_MS) as session:
        verifier = Verifier(session, VerifierConfig(statement_timeout_ms=CAP_MS, **config))  # type: ignore[arg-type]
        original = verifier.prepare(ORIGINAL)
        assert original.warmup.timed_out
        outcome = verifier.verify(original, candidate)
        return outcome.status, outcome.evidence.to_json(), outcome.detail


def test_an_equivalent_fast_candidate_is_verified_on_instances_with_a_lower_bound(dsn: str) -> None:
    status, evidence, detail = _verify(dsn, EQUIVALENT)
    assert status is OutcomeStatus.FASTER, detail
    assert evidence["speedup_is_lower_bound"] is True
    assert evidence["original_timed_out_ms"] == CAP_MS
    equivalence = evidence["equivalence"]
    assert "instances only" in equivalence["method"] and equivalence["informative_instances"] >= 1
    assert "not compared on the live data" in detail and detail.startswith("at least")


@pytest.mark.parametrize("ending", [";", " ;  -- cut from a log\n", "\n-- a trailing comment"])
def test_an_original_ending_in_a_terminator_or_a_comment_is_verified_beyond_the_cap(dsn: str, ending: str) -> None:
    """The output shape comes from PostgreSQL's description of the statement, not from wrapping its
    text: a trailing `;` or `-- comment` (as in queries copied from a file or a log) changes nothing."""
    with ReadOnlySession.connect(dsn, None, statement_timeout_ms=CAP_MS) as session:
        verifier = Verifier(session, VerifierConfig(statement_timeout_ms=CAP_MS))
        original = verifier.prepare(ORIGINAL + ending)
        assert original.warmup.timed_out and original.column_names == ["id", "n"]
        outcome = verifier.verify(original, EQUIVALENT + ending)
    assert outcome.status is OutcomeStatus.FASTER, outcome.detail
    assert outcome.evidence.speedup_is_lower_bound


def test_a_wrong_candidate_is_caught_on_an_instance(dsn: str) -> None:
    status, _, detail = _verify(dsn, WRONG)
    assert status is OutcomeStatus.NOT_EQUIVALENT, detail


def test_switched_off_the_original_timing_out_is_unverifiable(dsn: str) -> None:
    status, _, detail = _verify(dsn, EQUIVALENT, beyond_cap=False)
    assert status is OutcomeStatus.UNVERIFIABLE and "timed out" in detail


def test_no_informative_instance_no_verdict(dsn: str) -> None:
    # Nobody has 100k orders: every instance gives the original no rows, so nothing is shown.
    slow = ("SELECT c.id FROM customers c WHERE c.region = 'north' "
            "AND (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) > 100000")
    fast = ("SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.region = 'north' "
            "GROUP BY c.id HAVING count(*) > 100000")
    with ReadOnlySession.connect(dsn, None, statement_timeout_ms=CAP_MS) as session:
        verifier = Verifier(session, VerifierConfig(statement_timeout_ms=CAP_MS))
        original = verifier.prepare(slow)
        assert original.warmup.timed_out
        outcome = verifier.verify(original, fast)
        assert outcome.status is OutcomeStatus.UNVERIFIABLE, outcome.detail
        assert "non-empty" in outcome.detail


def test_the_bench_rechecks_on_instances_when_the_original_times_out(dsn: str, tmp_path: Path) -> None:
    replay = tmp_path / "r.json"
    replay.write_text(json.dumps([{"id": "right", "rewritten_query": EQUIVALENT},
                                  {"id": "wrong", "rewritten_query": WRONG}]))
    queries = [BenchQuery("right", ORIGINAL), BenchQuery("wrong", ORIGINAL + " ")]
    protocol = Protocol("quick", 0, 1, False, CAP_MS / 1000)
    records = {r["id"]: r for r in Runner(dsn, [ReplayMethod("r", replay)], protocol, progress=None).run(queries)}
    right = records["right"]["methods"]["r"]
    assert records["right"]["original"]["timed_out"]
    assert right["equivalent"] is True and "instances only" in right["equivalence_note"]
    assert right["speedup"] > 1.0
    wrong = records["wrong"]["methods"]["r"]
    assert wrong["equivalent"] is False and wrong["speedup"] == 1.0  # padded
