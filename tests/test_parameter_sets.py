"""Parameterized statements (pg_stat_statements text) verified on several parameter sets, on the real demo database."""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pglast
import psycopg
import pytest

from sidecar.verify import (
    Evidence,
    Outcome,
    OutcomeStatus,
    ReadOnlySession,
    Verifier,
    VerifierConfig,
)
from sidecar.verify.parameters import (
    SAMPLED,
    Chosen,
    ParameterError,
    ParameterSet,
    choose,
    choose_sets,
    normalize_placeholders,
)
from sidecar.verify.verifier import OriginalError, OriginalProfile

BY_DAY = "SELECT count(*) AS n FROM orders WHERE created_at::date = $1"
BY_DAY_SARGABLE = "SELECT count(*) AS n FROM orders WHERE created_at >= $1::date AND created_at < $1::date + 1"
BY_DAY_HARD_CODED = ("SELECT count(*) AS n FROM orders WHERE created_at >= DATE '2024-03-01' "
                     "AND created_at < DATE '2024-03-02'")


@pytest.fixture(scope="module")
def session(demo_dsn: str) -> Iterator[ReadOnlySession]:
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=20_000) as s:
        yield s


@pytest.fixture(scope="module")
def verifier(session: ReadOnlySession) -> Verifier:
    return Verifier(session, VerifierConfig(statement_timeout_ms=20_000, timed_runs=1))


def _stmt(text: str) -> Any:
    return pglast.parse_sql(text)[0].stmt


@pytest.mark.parametrize(("text", "expected"), [
    ("SELECT * FROM lineitem WHERE l_shipdate <= date $1 - interval $2",
     "SELECT * FROM lineitem WHERE l_shipdate <= $1::date - $2::interval"),
    ("SELECT DATE $1, Interval\n $2, TIMESTAMPTZ $3, time $4",
     "SELECT $1::DATE, $2::Interval, $3::TIMESTAMPTZ, $4::time"),
    ("SELECT timestamp with time zone $1, time  with time zone $2, timestamp $3",
     "SELECT $1::timestamp with time zone, $2::time  with time zone, $3::timestamp"),
    ("SELECT 'date $1' AS \"interval $2\" FROM t -- date $3\nWHERE x = $4",
     "SELECT 'date $1' AS \"interval $2\" FROM t -- date $3\nWHERE x = $4"),
    ("SELECT $q$ date $1 $q$, /* time $2 */ due_date $3, t.date $4, date '2024-01-01'",
     "SELECT $q$ date $1 $q$, /* time $2 */ due_date $3, t.date $4, date '2024-01-01'"),
])
def test_normalize_placeholders(text: str, expected: str) -> None:
    assert normalize_placeholders(text) == expected


def test_normalized_text_runs_on_the_server(session: ReadOnlySession) -> None:
    """libpg_query accepts `date $1` (it parses normalized text); PostgreSQL does not, the cast it does."""
    raw = "SELECT count(*) AS n FROM orders WHERE created_at >= date $1 AND created_at < date $1 + interval $2"
    _, refused, _ = session.explain_generic(raw)
    assert refused.error is not None and refused.error.sqlstate == "42601"
    plan, explained, _ = session.explain_generic(normalize_placeholders(raw))
    assert explained.error is None and plan is not None


def test_parameter_set_shape() -> None:
    s = ParameterSet({2: Chosen("x", SAMPLED), 1: Chosen(None, "given")})
    assert s.plain() == {1: None, 2: "x"}
    assert s.to_json() == {"$1": {"value": None, "source": "given"}, "$2": {"value": "x", "source": SAMPLED}}


def test_sets_from_statistics_are_distinct(session: ReadOnlySession) -> None:
    sets = choose_sets(session, _stmt("SELECT count(*) AS n FROM orders o WHERE o.user_id = $1 AND o.status = $2"))
    assert len(sets) == 3
    assert len({s.key() for s in sets}) == 3
    assert sets[0].values[2] == Chosen("delivered", "most common value of public.orders.status")
    assert [s.values[2].source for s in sets[1:]] == ["most common value #2 of public.orders.status",
                                                      "most common value #3 of public.orders.status"]
    assert all(s.values[1].source.endswith("public.orders.user_id") for s in sets)
    # choose() still gives the first, typical, values
    assert choose(session, _stmt("SELECT count(*) AS n FROM orders o WHERE o.user_id = $1 AND o.status = $2")) \
        == sets[0].values


def test_range_comparison_takes_histogram_bounds_across_the_range(session: ReadOnlySession) -> None:
    sets = choose_sets(session, _stmt(BY_DAY))
    sources = [s.values[1].source for s in sets]
    assert sources == [f"{q} histogram bound of public.orders.created_at"
                       for q in ("median", "lower-quartile", "upper-quartile")]
    values = [s.values[1].value or "" for s in sets]
    assert values[1] < values[0] < values[2]


def test_given_sets_come_first_deduplicated_and_capped(session: ReadOnlySession) -> None:
    stmt = _stmt(BY_DAY)
    sets = choose_sets(session, stmt, [{1: "2024-03-01"}, {1: "2024-03-01"}, {1: "2023-01-02"}])
    assert [s.values[1] for s in sets[:2]] == [Chosen("2024-03-01", SAMPLED), Chosen("2023-01-02", SAMPLED)]
    assert len(sets) == 3 and sets[2].values[1].source == "median histogram bound of public.orders.created_at"
    many = [{1: f"2024-03-{d:02d}"} for d in range(1, 9)]
    sets = choose_sets(session, stmt, many, maximum=5)
    assert [s.plain()[1] for s in sets] == [f"2024-03-{d:02d}" for d in range(1, 6)]
    assert all(s.values[1].source == SAMPLED for s in sets)


def test_parameter_without_a_column_cycles_through_given_sets(session: ReadOnlySession) -> None:
    stmt = _stmt("SELECT id FROM users WHERE id < $1 ORDER BY id LIMIT $2")
    sets = choose_sets(session, stmt, [{1: "10", 2: "5"}])
    assert len(sets) == 3 and len({s.key() for s in sets}) == 3
    assert sets[0].to_json() == {"$1": {"value": "10", "source": SAMPLED}, "$2": {"value": "5", "source": SAMPLED}}
    assert [s.values[2] for s in sets] == [Chosen("5", SAMPLED)] * 3
    assert [s.values[1].source for s in sets[1:]] == ["median histogram bound of public.users.id",
                                                      "lower-quartile histogram bound of public.users.id"]
    with pytest.raises(ParameterError, match=r"parameter \$2 is not compared with a table column"):
        choose_sets(session, stmt)


def test_too_few_distinct_values_is_a_clear_error(session: ReadOnlySession, verifier: Verifier) -> None:
    """users.is_active has two values: two sets, not three (the fallback scan must not add "false" to "f")."""
    stmt = _stmt("SELECT count(*) AS n FROM users WHERE is_active = $1")
    with pytest.raises(ParameterError, match=r"only 2 distinct parameter set\(s\) could be found for \$1.*"
                                             r"at least 3 are needed.*log_min_duration_statement"):
        choose_sets(session, stmt)
    assert len(choose_sets(session, stmt, minimum=2)) == 2
    with pytest.raises(OriginalError, match="only 2 distinct parameter set"):
        verifier.prepare_sets("SELECT count(*) AS n FROM users WHERE is_active = $1")


def test_fallback_scan_finds_values_without_statistics(admin: psycopg.Connection, session: ReadOnlySession) -> None:
    admin.execute("DROP SCHEMA IF EXISTS laser_sets CASCADE")
    admin.execute("CREATE SCHEMA laser_sets")
    try:
        admin.execute("CREATE TABLE laser_sets.t (k int, v text)")
        admin.execute("INSERT INTO laser_sets.t VALUES (1, 'a'), (2, 'b'), (3, NULL), (4, 'a')")
        admin.execute("GRANT USAGE ON SCHEMA laser_sets TO shop")
        admin.execute("GRANT SELECT ON laser_sets.t TO shop")
        stmt = _stmt("SELECT k FROM laser_sets.t WHERE v = $1")
        with pytest.raises(ParameterError, match=r"only 2 distinct parameter set"):
            choose_sets(session, stmt)
        admin.execute("INSERT INTO laser_sets.t VALUES (5, 'c')")
        sets = choose_sets(session, stmt)
        assert sorted(s.plain()[1] or "" for s in sets) == ["a", "b", "c"]
        assert {s.values[1].source for s in sets} == {"a value of laser_sets.t.v"}
    finally:
        admin.execute("DROP SCHEMA laser_sets CASCADE")


def test_prepare_sets_keeps_sources_and_one_profile_without_parameters(verifier: Verifier) -> None:
    profiles = verifier.prepare_sets(BY_DAY, [{1: "2024-03-01"}])
    assert len(profiles) == 3
    assert profiles[0].parameters[1] == Chosen("2024-03-01", SAMPLED)
    assert profiles[1].parameters[1].source == "median histogram bound of public.orders.created_at"
    assert all(p.text == BY_DAY and p.generic_plan is not None for p in profiles)
    assert len({p.sql for p in profiles}) == 3
    plain = verifier.prepare_sets("SELECT count(*) AS n FROM users WHERE id < 10")
    assert len(plain) == 1 and plain[0].parameters == {}


def test_winning_rewrite_is_faster_on_every_set(verifier: Verifier) -> None:
    profiles = verifier.prepare_sets(BY_DAY, [{1: "2024-03-01"}])
    outcome = verifier.verify_sets(profiles, BY_DAY_SARGABLE)
    assert outcome.status is OutcomeStatus.FASTER, outcome.detail
    evidence = outcome.evidence.to_json()
    entries = evidence["parameter_sets"]
    assert [e["set"] for e in entries] == [1, 2, 3]
    assert all(e["status"] == "faster" and e["speedup"] > 1.0 for e in entries)
    assert entries[0]["parameters"] == {"$1": {"value": "2024-03-01", "source": SAMPLED}}
    assert entries[2]["parameters"]["$1"]["source"] == "lower-quartile histogram bound of public.orders.created_at"
    assert evidence["speedup_min"] == min(e["speedup"] for e in entries)
    assert outcome.speedup == pytest.approx(math.prod(e["speedup"] for e in entries) ** (1 / 3), rel=1e-3)
    assert "plan_after" in evidence and "speedup_is_lower_bound" not in evidence
    assert "geometric mean over 3 parameter sets" in outcome.detail


def test_candidate_right_for_one_value_only_is_not_equivalent(verifier: Verifier) -> None:
    profiles = verifier.prepare_sets(BY_DAY, [{1: "2024-03-01"}])
    outcome = verifier.verify_sets(profiles, BY_DAY_HARD_CODED)
    assert outcome.status is OutcomeStatus.NOT_EQUIVALENT, outcome.detail
    assert outcome.detail.startswith("on parameter set 2 of 3: ")
    assert outcome.counterexample is not None and outcome.counterexample["instance"] == "live data"
    evidence = outcome.evidence.to_json()
    assert [(e["set"], e["status"]) for e in evidence["parameter_sets"]] == [(1, "faster"), (2, "not_equivalent")]
    assert evidence["failed_parameter_set"] == 2


def test_single_profile_is_plain_verify(verifier: Verifier) -> None:
    profiles = verifier.prepare_sets("SELECT id FROM users WHERE id < 10")
    outcome = verifier.verify_sets(profiles, "SELECT id FROM users WHERE id <= 8")
    assert outcome.status is OutcomeStatus.NOT_EQUIVALENT
    assert "parameter_sets" not in outcome.evidence.to_json() and not outcome.detail.startswith("on parameter set")


def test_lower_bound_on_any_set_reaches_the_aggregate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-set outcomes stubbed: the aggregation alone (a beyond-cap set is exercised in test_beyond_cap)."""
    verifier = Verifier(None, VerifierConfig())  # type: ignore[arg-type]
    results = iter([
        Outcome(OutcomeStatus.FASTER, "2x", speedup=2.0, original_ms=20.0, candidate_ms=10.0,
                evidence=Evidence(plan_after="first")),
        Outcome(OutcomeStatus.FASTER, "at least 8x", speedup=8.0, original_ms=400.0, candidate_ms=50.0,
                evidence=Evidence(plan_after="second", speedup_is_lower_bound=True)),
    ])
    monkeypatch.setattr(verifier, "verify", lambda profile, candidate: next(results))
    profile = OriginalProfile(statement=None, plan=None, warmup=None, columns=(),  # type: ignore[arg-type]
                              parameters={1: Chosen("1", SAMPLED)})
    outcome = verifier.verify_sets([profile, profile], "SELECT 1")
    assert outcome.status is OutcomeStatus.FASTER
    assert outcome.speedup == pytest.approx(4.0)
    assert (outcome.original_ms, outcome.candidate_ms) == (210.0, 30.0)
    evidence = outcome.evidence.to_json()
    assert evidence["plan_after"] == "first"
    assert evidence["speedup_is_lower_bound"] is True
    assert [e["speedup_is_lower_bound"] for e in evidence["parameter_sets"]] == [False, True]
    assert evidence["speedup_min"] == 2.0
    assert outcome.detail.startswith("at least 4.00x")
