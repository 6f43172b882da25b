"""Equivalence beyond today's data, and `$n` parameters, on the real demo database."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from sidecar.verify import OutcomeStatus, ReadOnlySession, Verifier, VerifierConfig
from sidecar.verify.session import SessionError
from sidecar.verify.verifier import OriginalError


@pytest.fixture(scope="module")
def session(demo_dsn: str) -> Iterator[ReadOnlySession]:
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=20_000) as s:
        yield s


@pytest.fixture(scope="module")
def verifier(session: ReadOnlySession) -> Verifier:
    return Verifier(session, VerifierConfig(statement_timeout_ms=20_000, timed_runs=1))


def test_boundary_literal_counterexample_is_shrunk(verifier: Verifier) -> None:
    """`>=` vs `>` agree on live data (no order sits on midnight) but not on the literal itself."""
    original = "SELECT count(*) AS n FROM orders o WHERE o.created_at >= '2024-01-01'"
    outcome = verifier.verify(verifier.prepare(original),
                              "SELECT count(*) AS n FROM orders o WHERE o.created_at > '2024-01-01'")
    assert outcome.status == OutcomeStatus.NOT_EQUIVALENT
    cx = outcome.counterexample
    assert cx is not None and cx["instance"] == "boundaries"
    rows = cx["tables"]["public.orders"]["rows"]
    assert len(rows) == 1 and rows[0][7] == "2024-01-01T00:00:00"
    assert cx["original_result"]["rows"] != cx["candidate_result"]["rows"]
    assert outcome.to_json()["counterexample"] == cx


def test_rewrite_relying_on_a_declared_foreign_key_is_equivalent(verifier: Verifier) -> None:
    """orders.user_id is NOT NULL and references users: the join drops nothing, on any legal instance."""
    outcome = verifier.verify(verifier.prepare("SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id"),
                              "SELECT o.id FROM orders o")
    assert outcome.equivalent, outcome.detail
    assert outcome.evidence.perturbed_instances is not None
    tried = outcome.evidence.perturbed_instances.tried
    names = [t["name"] for t in tried]
    assert {"sample", "nulls", "duplicates", "empty"} <= set(names)
    assert all(t["verdict"] == "agree" for t in tried)
    assert any(t["rows"]["public.users"] > 0 and t["result_rows"] > 0 for t in tried)


def test_nullable_foreign_key_join_is_not_dropped(verifier: Verifier) -> None:
    """events.user_id is nullable: dropping the join to users keeps events without a user."""
    original = "SELECT e.id FROM events e JOIN users u ON u.id = e.user_id WHERE e.id < 3000"
    outcome = verifier.verify(verifier.prepare(original), "SELECT e.id FROM events e WHERE e.id < 3000")
    assert outcome.status == OutcomeStatus.NOT_EQUIVALENT
    assert outcome.counterexample is not None


def test_write_attempted_only_on_perturbed_rows_is_stopped(admin: psycopg.Connection, verifier: Verifier) -> None:
    """A candidate whose function writes only when the table is empty passes live data, then hits
    the sealed, read-only transaction on the empty instance: nothing is written."""
    admin.execute("""
        CREATE OR REPLACE FUNCTION public.writes_on_zero(n bigint) RETURNS bigint LANGUAGE plpgsql AS
        $$ BEGIN IF n = 0 THEN UPDATE users SET name = 'pwned' WHERE id = 1; END IF; RETURN n; END $$""")
    try:
        before = admin.execute("SELECT name FROM users WHERE id = 1").fetchone()
        outcome = verifier.verify(verifier.prepare("SELECT count(*) AS n FROM users u"),
                                  "SELECT public.writes_on_zero(count(*)) AS n FROM users u")
        assert outcome.status == OutcomeStatus.NOT_EQUIVALENT, outcome.detail
        assert outcome.counterexample is not None and outcome.counterexample["instance"] == "empty"
        assert "read-only transaction" in outcome.counterexample["candidate_result"]["error"]
        assert admin.execute("SELECT name FROM users WHERE id = 1").fetchone() == before
        assert admin.execute("SELECT count(*) FROM users WHERE name = 'pwned'").fetchone() == (0,)
    finally:
        admin.execute("DROP FUNCTION public.writes_on_zero(bigint)")


def test_scratch_runs_nothing_before_it_is_sealed(session: ReadOnlySession) -> None:
    from psycopg import sql
    with session.scratch() as scratch:
        with pytest.raises(SessionError, match="seal"):
            scratch.execute("SELECT 1")
        scratch.create_copy(sql.Identifier("public", "users"), "laser_probe")
        scratch.seal()
        with pytest.raises(SessionError, match="before the transaction is sealed"):
            scratch.create_copy(sql.Identifier("public", "users"), "laser_probe2")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), scratch.savepoint():
            scratch.execute("UPDATE users SET name = name WHERE id = 1")
        assert scratch.execute("INSERT INTO pg_temp.laser_probe SELECT * FROM users LIMIT 3 RETURNING 1") == [(1,)] * 3


def test_views_are_read_as_they_are(admin: psycopg.Connection, verifier: Verifier) -> None:
    admin.execute("CREATE OR REPLACE VIEW public.big_orders AS SELECT * FROM orders WHERE amount > 900")
    admin.execute("GRANT SELECT ON public.big_orders TO shop")
    try:
        outcome = verifier.verify(verifier.prepare("SELECT count(*) AS n FROM big_orders"),
                                  "SELECT count(*) AS n FROM orders WHERE amount > 900")
        assert outcome.equivalent
        assert outcome.evidence.perturbed_instances is not None
        assert "big_orders is not a table" in outcome.evidence.perturbed_instances.skipped
    finally:
        admin.execute("DROP VIEW public.big_orders")


def test_parameterized_original_gets_generic_plan_and_typical_values(verifier: Verifier) -> None:
    profile = verifier.prepare("SELECT count(*) AS n FROM orders o WHERE o.user_id = $1 AND o.status = $2")
    assert profile.generic_plan is not None
    assert profile.parameters[2].source == "most common value of public.orders.status"
    outcome = verifier.verify(profile, "SELECT count(o.id) AS n FROM orders o WHERE o.status = $2 AND o.user_id = $1")
    assert outcome.equivalent
    assert outcome.evidence.parameters is not None
    assert str(outcome.evidence.parameters["$1"]["source"]).endswith("public.orders.user_id")
    wrong = verifier.verify(profile, "SELECT count(*) AS n FROM orders o WHERE o.user_id = $3")
    assert wrong.status == OutcomeStatus.EXEC_ERROR and "$3" in wrong.detail


def test_parameterized_original_with_given_values(verifier: Verifier) -> None:
    profile = verifier.prepare("SELECT id FROM users WHERE id < $1", {1: "10"})
    assert len(profile.warmup.rows or []) == 9
    outcome = verifier.verify(profile, "SELECT id FROM users WHERE id <= $1 - 1")
    assert outcome.equivalent, outcome.detail


def test_parameter_without_a_column_is_a_clear_error(verifier: Verifier) -> None:
    with pytest.raises(OriginalError, match=r"parameter \$1 is not compared with a table column"):
        verifier.prepare("SELECT $1::int + 1 AS x")
    with pytest.raises(OriginalError, match="does not exist"):
        verifier.prepare("SELECT * FROM no_such_table WHERE a = $1")


def test_caller_without_temp_privilege_gets_live_data_verdict_and_the_reason(cluster, admin_dsn: str) -> None:
    """Perturbed instances need CREATE TEMP; without it the verdict rests on live data and says so."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'laser_notemp'").fetchone():
            conn.execute("CREATE DATABASE laser_notemp")
        conn.execute("REVOKE TEMPORARY ON DATABASE laser_notemp FROM PUBLIC")
    with psycopg.connect(cluster.dsn("laser_notemp"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 50) g ON CONFLICT DO NOTHING")
        conn.execute("GRANT SELECT ON t TO shop")
    with ReadOnlySession.connect(cluster.dsn("laser_notemp", "shop"), None) as session:
        verifier = Verifier(session, VerifierConfig(timed_runs=1))
        outcome = verifier.verify(verifier.prepare("SELECT count(*) AS n FROM t WHERE v = 3"),
                                  "SELECT count(id) AS n FROM t WHERE v = 3")
    assert outcome.equivalent
    assert outcome.evidence.perturbed_instances is not None
    assert "permission denied to create temporary tables" in outcome.evidence.perturbed_instances.skipped


def test_sampling_is_repeatable_and_follows_the_querys_filters_along_links(session: ReadOnlySession) -> None:
    """Scans are not synchronized while sampling (a LIMIT over a big table must start at its first
    block every time), the same seed gives the same sample, and rows pulled for partners sampled
    later pass the table's own filters first: every big refund (0.3% of orders) of the sampled
    Canadian users is in the sample, not just whichever of their ~50 orders a scan meets first."""
    from psycopg import sql as pgsql

    from sidecar.verify import tablefacts
    from sidecar.verify.instances import Focus, InstanceBuilder, InstanceConfig, Link

    def sample() -> tuple[str, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with session.transaction() as cur:
            oids = tablefacts.resolve(cur, [(None, "users"), (None, "orders")])
            users, orders = (tablefacts.load(cur, oids[(None, name)] or 0) for name in ("users", "orders"))
        focus = [Focus(users.oid, "u", "u.country = 'CA'"),
                 Focus(orders.oid, "o", "o.status = 'refunded' AND o.amount > 1800")]
        with session.scratch() as scratch:
            builder = InstanceBuilder(scratch, [users, orders], [Link(orders.oid, "user_id", users.oid, "id")], [],
                                      InstanceConfig(sample_rows=20), focus)
            builder.create()
            setting = scratch.execute("SHOW synchronize_seqscans")[0][0]
            builder.sample()
            sampled_orders = pgsql.Identifier("pg_temp", f"laser_s{orders.oid}")
            sampled_users = pgsql.Identifier("pg_temp", f"laser_s{users.oid}")
            big_refunds = "o.status = 'refunded' AND o.amount > 1800 AND u.country = 'CA'"
            rows = scratch.execute(pgsql.SQL(
                "SELECT o.id FROM {} AS o JOIN {} AS u ON u.id = o.user_id WHERE " + big_refunds + " ORDER BY o.id"
            ).format(sampled_orders, sampled_users))
            live = scratch.execute(pgsql.SQL(
                "SELECT o.id FROM public.orders AS o JOIN {} AS u ON u.id = o.user_id WHERE " + big_refunds
                + " ORDER BY o.id").format(sampled_users))
        return setting, rows, live

    setting, first, live = sample()
    assert setting == "off"
    assert sample()[1] == first
    assert len(live) >= 2 and first == live
