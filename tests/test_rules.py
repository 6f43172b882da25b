"""Rule fixtures: each rewrite matches its expected SQL and returns the same rows on PostgreSQL."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pytest
import sqlglot
from rulecases import RuleCase, parse_fixture
from sqlglot import exp

from sidecar.backends.base import Prompt
from sidecar.backends.rules import RulesBackend, completion
from sidecar.catalog import Catalog, Column, Table, load_catalog, referenced_tables
from sidecar.rules import RULES
from sidecar.rules.runner import rewrite_candidates
from sidecar.rules.search import SearchStats, beam_search

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"
DEMO_QUERIES = ROOT / "sql" / "demo" / "queries"
STATEMENT_TIMEOUT_MS = 30_000


CASES = [case for path in sorted(FIXTURES.glob("*.sql")) for case in parse_fixture(path)]
FIRING = [case for case in CASES if case.expected_sql is not None]


def _rule(name: str) -> Callable[[exp.Expr, Catalog], exp.Expr | None]:
    return getattr(importlib.import_module(f"sidecar.rules.{name}"), name)  # type: ignore[no-any-return]


def _normalize(sql: str) -> str:
    return sqlglot.parse_one(sql, read="postgres").sql(dialect="postgres", comments=False)


def _rows(conn: psycopg.Connection, sql: str) -> Counter[tuple[Any, ...]]:
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(STATEMENT_TIMEOUT_MS),))
        return Counter(conn.execute(sql).fetchall())


@pytest.fixture(scope="module")
def demo_conn(demo_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def demo_catalog(demo_conn: psycopg.Connection) -> Catalog:
    return load_catalog(demo_conn, ["users", "products", "orders", "events"])


def test_every_rule_has_fixtures() -> None:
    for rule in RULES:
        cases = [case for case in CASES if case.rule == rule.__name__]
        assert sum(case.expected_sql is not None for case in cases) >= 2, rule.__name__
        assert sum(case.expected_sql is None for case in cases) >= 1, rule.__name__


def test_unparseable_sql_gives_no_candidates() -> None:
    assert rewrite_candidates("SELECT FROM WHERE (((", Catalog()) == []
    assert rewrite_candidates("", Catalog()) == []


def test_unknown_tables_give_no_candidates() -> None:
    # Without catalog facts the type- and key-dependent rules must stay silent.
    sql = "SELECT DISTINCT u.* FROM users u JOIN events e ON e.user_id = u.id WHERE e.created_at::date = '2024-01-01'"
    rules_fired = {name for candidate in rewrite_candidates(sql, Catalog()) for name in candidate.rules}
    assert "sargable_predicates" not in rules_fired


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.rule}: {case.title}")
def test_rule_output(case: RuleCase, demo_catalog: Catalog) -> None:
    tree = sqlglot.parse_one(case.input_sql, read="postgres")
    before = tree.sql(dialect="postgres")
    result = _rule(case.rule)(tree, demo_catalog)
    assert tree.sql(dialect="postgres") == before, "the rule mutated its input"
    if case.expected_sql is None:
        assert result is None, result.sql(dialect="postgres") if result is not None else ""
    else:
        assert result is not None, "the rule did not fire"
        assert result.sql(dialect="postgres") == _normalize(case.expected_sql)


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.rule}: {case.title}")
def test_rule_results_equal_on_postgres(case: RuleCase, demo_conn: psycopg.Connection) -> None:
    original = _rows(demo_conn, case.input_sql)
    if case.expected_sql is not None:
        assert _rows(demo_conn, case.expected_sql) == original


def test_rules_backend_caps_and_labels(demo_catalog: Catalog) -> None:
    sql = (DEMO_QUERIES / "02_correlated_aggregates_per_user.sql").read_text()
    [completions] = RulesBackend().generate([Prompt(sql, demo_catalog)], n=1)
    assert len(completions) == 1
    assert completions[0].source == "rules:decorrelate_scalar_aggregates"
    assert RulesBackend().generate([Prompt(sql, demo_catalog)], n=0) == [[]]


@pytest.mark.parametrize("path", sorted(DEMO_QUERIES.glob("*.sql")), ids=lambda path: path.stem)
def test_demo_query_gets_an_equivalent_candidate(path: Path, demo_conn: psycopg.Connection) -> None:
    sql = path.read_text()
    lines = sql.splitlines()
    assert lines[0].startswith("-- title: ") and lines[1].startswith("-- anti-pattern: ")
    catalog = load_catalog(demo_conn, referenced_tables(sql))
    candidates = rewrite_candidates(sql, catalog)
    assert candidates, "no rule fired"
    original = _rows(demo_conn, sql)
    assert any(_rows(demo_conn, candidate.sql) == original for candidate in candidates)


@pytest.mark.parametrize("op", ["=", "<", "<=", ">", ">="])
def test_date_cast_compared_with_a_parameter_becomes_a_range_equal_for_every_value(
        op: str, demo_catalog: Catalog, demo_conn: psycopg.Connection) -> None:
    """pg_stat_statements' `c::date <op> $1`: the range bounds come from $1, so any value gives the same rows."""
    original = f"SELECT count(*) FROM orders WHERE created_at::date {op} $1"
    rewritten = _rule("sargable_predicates")(sqlglot.parse_one(original, read="postgres"), demo_catalog)
    assert rewritten is not None
    text = rewritten.sql(dialect="postgres")
    assert "CAST(created_at AS DATE)" not in text and "CAST($1 AS DATE)" in text
    with demo_conn.cursor() as cur:
        cur.execute(f"PREPARE laser_original AS {original}")
        cur.execute(f"PREPARE laser_rewrite AS {text}")
        try:
            for value in ("2024-02-29", "2024-03-01 00:00:00", "2024-12-31 23:59:59", "2023-01-01"):
                run = "EXECUTE {}({})"
                expected = cur.execute(psycopg.sql.SQL(run).format(
                    psycopg.sql.Identifier("laser_original"), psycopg.sql.Literal(value))).fetchone()
                got = cur.execute(psycopg.sql.SQL(run).format(
                    psycopg.sql.Identifier("laser_rewrite"), psycopg.sql.Literal(value))).fetchone()
                assert got == expected, (op, value)
        finally:
            cur.execute("DEALLOCATE laser_original")
            cur.execute("DEALLOCATE laser_rewrite")


def test_date_cast_of_a_text_column_compared_with_a_parameter_is_left_alone(demo_catalog: Catalog) -> None:
    tree = sqlglot.parse_one("SELECT count(*) FROM users WHERE email::date = $1", read="postgres")
    assert _rule("sargable_predicates")(tree, demo_catalog) is None


def _planner_cost(conn: psycopg.Connection) -> Callable[[str], float | None]:
    def cost(sql: str) -> float | None:
        try:
            with conn.transaction():
                plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0]
        except psycopg.Error:
            return None
        return float(plan[0]["Plan"]["Total Cost"])
    return cost


SEQUENCE_QUERY = (
    "SELECT o.id FROM orders AS o WHERE o.created_at::date = DATE '2024-03-01' "
    "AND o.amount > (SELECT avg(x.amount) FROM orders AS x WHERE x.user_id = o.user_id)"
)


def test_beam_search_explores_rule_sequences_cheapest_first(demo_catalog: Catalog,
                                                           demo_conn: psycopg.Connection) -> None:
    cost = _planner_cost(demo_conn)
    stats = SearchStats()
    found = beam_search(SEQUENCE_QUERY, demo_catalog, cost, stats=stats)
    singles = {c.rules[0] for c in found if len(c.rules) == 1}
    assert {"decorrelate_scalar_aggregates", "sargable_predicates"} <= singles
    deeper = [c for c in found if len(c.rules) > 1]
    assert deeper, "no rule sequence survived"
    assert [c.cost for c in found] == sorted(c.cost for c in found)
    by_rules = {c.rules: c for c in found}
    for candidate in deeper:
        # a step is kept only when the planner estimates it cheaper than its parent
        assert candidate.cost < by_rules[candidate.rules[:-1]].cost
        assert len(set(candidate.rules)) == len(candidate.rules)
    assert stats.planned >= len(found) and stats.elapsed_s > 0
    original = _rows(demo_conn, SEQUENCE_QUERY)
    for candidate in found:
        assert _rows(demo_conn, candidate.sql) == original, candidate.rules


def test_beam_search_keeps_to_its_deadline_and_drops_unplannable(demo_catalog: Catalog,
                                                                 demo_conn: psycopg.Connection) -> None:
    stats = SearchStats()
    assert beam_search(SEQUENCE_QUERY, demo_catalog, _planner_cost(demo_conn), deadline=0.0, stats=stats) == []
    assert stats.out_of_time
    stats = SearchStats()
    assert beam_search(SEQUENCE_QUERY, demo_catalog, lambda sql: None, stats=stats) == []
    assert stats.unplannable == stats.planned > 0


class ConnectionPlanner:
    """The planner's cost estimates through a real connection (no row estimates)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.cost = _planner_cost(conn)

    @staticmethod
    def rows(sql: str) -> float | None:
        return None


@pytest.fixture(scope="module")
def planner(demo_conn: psycopg.Connection) -> ConnectionPlanner:
    return ConnectionPlanner(demo_conn)


def test_rules_backend_searches_when_the_planner_is_at_hand(demo_catalog: Catalog,
                                                           planner: ConnectionPlanner) -> None:
    backend = RulesBackend()
    plain = backend.generate([Prompt(SEQUENCE_QUERY, demo_catalog)], n=20)[0]
    search = backend.search(SEQUENCE_QUERY, demo_catalog, planner)
    searched = [completion(c) for c in search.candidates[:20]]
    assert {c.text for c in plain} & {c.text for c in searched}
    assert any("+" in c.source for c in searched)
    report = search.report
    assert report.kind == "beam" and report.candidates >= len(searched)
    assert report.planned is not None and report.planned >= report.candidates and not report.out_of_time
    for found in searched:
        assert found.source == "rules:" + "+".join(found.details["rules"])
        assert found.details["estimated_cost"] > 0
    assert [c.details["estimated_cost"] for c in searched] == sorted(c.details["estimated_cost"] for c in searched)
    assert all("estimated_cost" not in c.details for c in plain)
    assert backend.search(SEQUENCE_QUERY, demo_catalog).report.kind == "each rule, then all composed"


AMBIGUOUS_MIDNIGHT_QUERIES = [
    "SELECT count(*) FROM laser_stamps AS s WHERE date_part('year', s.at) = 2015 AND date_part('month', s.at) = 11",
    "SELECT count(*) FROM laser_stamps AS s WHERE s.at::date = DATE '2015-11-01'",
    "SELECT count(*) FROM laser_stamps AS s WHERE date_trunc('month', s.at) = DATE '2015-11-01'",
    "SELECT count(*) FROM laser_stamps AS s WHERE s.at::date >= DATE '2015-11-01'",
    "SELECT count(*) FROM laser_stamps AS s WHERE s.at::date < DATE '2015-11-01'",
]


@pytest.mark.parametrize("sql", AMBIGUOUS_MIDNIGHT_QUERIES)
def test_timestamptz_ranges_keep_the_first_of_two_local_midnights(sql: str, demo_dsn: str) -> None:
    """America/Havana fell back from 01:00 to 00:00 on 2015-11-01, so that day had two midnights and
    DATE '2015-11-01' is the later one: an exact range from DATE bounds loses the first hour, which
    date_part, ::date and date_trunc (all in the session time zone) place on November 1st."""
    catalog = Catalog({"pg_temp.laser_stamps": Table("pg_temp", "laser_stamps",
                                                     (Column("at", "timestamp with time zone", False),))})
    rewritten = _rule("sargable_predicates")(sqlglot.parse_one(sql, read="postgres"), catalog)
    assert rewritten is not None
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'America/Havana'")
        conn.execute("CREATE TEMPORARY TABLE laser_stamps (at timestamptz NOT NULL)")
        conn.execute("INSERT INTO laser_stamps SELECT generate_series(timestamptz '2015-10-31 20:00-04', "
                     "timestamptz '2015-11-01 03:00-05', interval '10 minutes')")
        first_hour = conn.execute("SELECT count(*) FROM laser_stamps WHERE at >= timestamptz '2015-11-01 00:00-04' "
                                  "AND at < timestamptz '2015-11-01 00:00-05'").fetchone()
        later_midnight = conn.execute("SELECT DATE '2015-11-01'::timestamptz = timestamptz '2015-11-01 00:00-05'")
        assert first_hour == (6,) and later_midnight.fetchone() == (True,)  # the instance shows the trap
        expected = conn.execute(sql).fetchone()
        assert conn.execute(rewritten.sql(dialect="postgres")).fetchone() == expected


@pytest.mark.parametrize(("sql", "rule", "words"), [
    ("SELECT u.id FROM users AS u WHERE u.id NOT IN (SELECT e.user_id FROM events AS e WHERE e.page = '/cart')",
     "not_in_to_not_exists", "not known to be NOT NULL"),
    ("SELECT u.id FROM users AS u WHERE u.signup_date > (SELECT min(o.created_at) FROM orders AS o "
     "WHERE o.user_id > u.id AND o.status = 'refunded')", "decorrelate_scalar_aggregates", "not by column equalities"),
    ("WITH t AS (SELECT o.user_id, sum(o.amount) AS total FROM orders AS o GROUP BY o.user_id) "
     "SELECT a.user_id FROM t AS a WHERE a.total > (SELECT avg(b.total) * 2.5 FROM t AS b)",
     "inline_shared_ctes", "may run once per row"),
])
def test_a_rule_that_recognises_its_pattern_but_refuses_says_why(sql: str, rule: str, words: str,
                                                                  demo_catalog: Catalog,
                                                                  planner: ConnectionPlanner) -> None:
    search = RulesBackend().search(sql, demo_catalog, planner)
    assert all(rule not in c.rules for c in search.candidates)
    declined = search.report.to_json()["declined"]
    assert words in declined[rule], declined
