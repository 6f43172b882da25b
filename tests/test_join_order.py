"""explicit_join_order with real planner estimates: probes, with_scan_estimates, the pipeline's planner."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlglot

from laser import demo
from sidecar.backends.rules import Planner, RulesBackend, RuleSearch, SearchReport
from sidecar.catalog import Catalog, load_catalog, referenced_tables
from sidecar.config import SidecarConfig
from sidecar.pipeline import RewritePipeline
from sidecar.rules.explicit_join_order import explicit_join_order, scan_probes, with_scan_estimates
from sidecar.verify import ReadOnlySession, Verifier

# Nine explicit items, written from the largest table; the filter on `o` makes it the smallest
# input by far, which only the planner's estimate (not reltuples) knows.
NINE_JOINS = (
    "SELECT o.id, u.country, p.category, r.country AS referrer_country, o2.id AS other_order, e.event_type "
    "FROM events AS e "
    "JOIN users AS u ON u.id = e.user_id "
    "JOIN orders AS o ON o.user_id = u.id "
    "JOIN products AS p ON p.id = o.product_id "
    "JOIN users AS r ON r.id = u.referred_by "
    "JOIN orders AS o2 ON o2.user_id = r.id "
    "JOIN products AS p2 ON p2.id = o2.product_id "
    "JOIN users AS u3 ON u3.id = o2.user_id "
    "JOIN products AS p3 ON p3.id = o.product_id "
    "WHERE o.id <= 300 AND e.event_type = 'purchase' AND p.brand IS NOT NULL"
)


@pytest.fixture(scope="module")
def conn(demo_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(demo_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def catalog(conn: psycopg.Connection[Any]) -> Catalog:
    return load_catalog(conn, ["users", "products", "orders", "events"])


def _rows(conn: psycopg.Connection[Any], sql: str) -> Counter[tuple[Any, ...]]:
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET LOCAL statement_timeout = '30s'")
        return Counter(conn.execute(sql).fetchall())


def _planner_rows(conn: psycopg.Connection[Any]) -> Any:
    """The planner's row estimate of a probe on this connection (None when it cannot be planned)."""
    def rows(sql: str) -> float | None:
        try:
            with conn.transaction():
                plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()
        except psycopg.Error:
            return None
        assert plan is not None
        return float(plan[0][0]["Plan"]["Plan Rows"])
    return rows


def _rewrite(sql: str, catalog: Catalog) -> str | None:
    result = explicit_join_order(sqlglot.parse_one(sql, read="postgres"), catalog)
    return None if result is None else result.sql(dialect="postgres")


def test_probes_are_explained_and_their_estimates_order_the_joins(
        conn: psycopg.Connection[Any], catalog: Catalog) -> None:
    probes = scan_probes(NINE_JOINS, catalog)
    assert len(probes) == 9
    assert "SELECT * FROM orders AS o WHERE o.id <= 300" in probes
    assert "SELECT * FROM events AS e WHERE e.event_type = 'purchase'" in probes
    assert "SELECT * FROM users AS u" in probes

    estimated = with_scan_estimates(NINE_JOINS, catalog, _planner_rows(conn))
    assert set(estimated.scan_rows) == set(probes)
    orders = catalog.table("orders")
    assert orders is not None
    assert 0 < estimated.scan_rows["SELECT * FROM orders AS o WHERE o.id <= 300"] < orders.row_estimate / 100
    assert estimated.join_collapse_limit == 8 and estimated.geqo_threshold == 12 and estimated.geqo

    # reltuples alone starts from the smallest table (products); the estimates start from `o`.
    without = _rewrite(NINE_JOINS, catalog)
    with_estimates = _rewrite(NINE_JOINS, estimated)
    assert without is not None and without.split(" FROM ")[1].startswith("products AS p JOIN")
    assert with_estimates is not None and with_estimates.split(" FROM ")[1].startswith("orders AS o JOIN")
    assert _rows(conn, with_estimates) == _rows(conn, NINE_JOINS)


def test_settings_come_from_the_session(conn: psycopg.Connection[Any], catalog: Catalog) -> None:
    five = ("SELECT count(*) FROM orders AS o JOIN users AS u ON u.id = o.user_id "
            "JOIN products AS p ON p.id = o.product_id JOIN users AS r ON r.id = u.referred_by "
            "JOIN products AS p2 ON p2.id = o.product_id WHERE o.id < 50")
    assert scan_probes(five, catalog) == []
    conn.execute("SET join_collapse_limit = 4")
    try:
        lowered = load_catalog(conn, ["users", "products", "orders"])
        assert lowered.join_collapse_limit == 4 and lowered.scan_rows == {}
        probes = scan_probes(five, lowered)
        assert len(probes) == 5
        estimated = with_scan_estimates(five, lowered, _planner_rows(conn))
        assert set(estimated.scan_rows) == set(probes)
    finally:
        conn.execute("RESET join_collapse_limit")
    rewritten = _rewrite(five, estimated)
    assert rewritten is not None and " FROM orders AS o JOIN " in rewritten
    assert _rows(conn, rewritten) == _rows(conn, five)


def test_the_verifier_estimates_probes_and_refuses_what_cannot_be_planned(demo_dsn: str) -> None:
    with ReadOnlySession.connect(demo_dsn, None) as session:
        verifier = Verifier(session)
        original = verifier.prepare("SELECT count(*) FROM users")
        good = verifier.estimate(original, "SELECT * FROM users AS u WHERE u.id < 10")
        assert good is not None and 0 < good.rows < 100 and good.cost > 0
        assert verifier.estimate(original, "SELECT * FROM no_such_table AS t") is None
        assert verifier.estimate(original, "SELECT * FROM orders AS o WHERE o.id = $1") is None  # not its parameter
        assert verifier.estimate(original, "DELETE FROM users") is None
        assert session.run("SELECT 1").rows == [(1,)]  # the session is still usable


def test_cte_and_derived_tables_are_ordered_by_their_probe_estimates(
        conn: psycopg.Connection[Any], catalog: Catalog) -> None:
    sql = ("WITH recent AS (SELECT id, user_id, product_id FROM orders WHERE created_at >= '2024-12-30') "
           "SELECT count(*), count(DISTINCT u.country) "
           "FROM events AS e "
           "JOIN users AS u ON u.id = e.user_id "
           "JOIN recent AS o ON o.user_id = u.id "
           "JOIN (SELECT id, category FROM products WHERE category = 'music') AS p ON p.id = o.product_id "
           "JOIN users AS r ON r.id = u.referred_by "
           "JOIN orders AS o2 ON o2.user_id = r.id "
           "JOIN products AS p2 ON p2.id = o2.product_id "
           "JOIN users AS u3 ON u3.id = o2.user_id "
           "JOIN products AS p3 ON p3.id = o.product_id "
           "WHERE event_type = 'checkout'")
    assert _rewrite(sql, catalog) is None  # no estimate for the CTE and the derived table
    probes = scan_probes(sql, catalog)
    assert any(probe.startswith("WITH recent AS (") and probe.endswith("SELECT * FROM recent AS o")
               for probe in probes)
    estimated = with_scan_estimates(sql, catalog, _planner_rows(conn))
    assert set(estimated.scan_rows) == set(probes)
    rewritten = _rewrite(sql, estimated)
    assert rewritten is not None
    # The derived table (~80 music products) and the CTE (two days of orders) are the smallest inputs.
    assert rewritten.split(" FROM ", 2)[2].startswith(
        "(SELECT id, category FROM products WHERE category = 'music') AS p JOIN recent AS o ON ")
    assert "WHERE event_type = 'checkout'" in rewritten
    assert _rows(conn, rewritten) == _rows(conn, sql)


class RecordingRules(RulesBackend):
    """The rules backend, recording the catalog its planner fills in (and finding nothing)."""

    def __init__(self) -> None:
        self.catalogs: list[Catalog] = []

    def search(self, query: str, catalog: Catalog, planner: Planner | None = None,
               deadline: float | None = None) -> RuleSearch:
        assert planner is not None
        self.catalogs.append(with_scan_estimates(query, catalog, planner.rows))
        return RuleSearch([], SearchReport(kind="beam", candidates=0))


def test_the_pipeline_hands_the_rules_estimates_from_the_callers_session(cluster: Any) -> None:
    rules = RecordingRules()
    config = SidecarConfig(dsn=cluster.sidecar_dsn(), timed_runs=1, demonstrations=0)
    result = RewritePipeline(config, rules=rules).rewrite(NINE_JOINS, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE)
    assert result.status == "no_verified_improvement"
    [catalog] = rules.catalogs
    assert sorted(catalog.tables) == [f"public.{name}" for name in sorted(referenced_tables(NINE_JOINS))]
    assert set(catalog.scan_rows) == set(scan_probes(NINE_JOINS, catalog))
    assert catalog.scan_rows["SELECT * FROM orders AS o WHERE o.id <= 300"] < 1000
