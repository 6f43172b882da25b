"""The reverse optimizer's transformations: each fixture's output, and the verifier's verdict that
every slow form is equivalent to its input on PostgreSQL (live data and perturbed instances)."""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlglot
from rulecases import RuleCase, parse_fixture

from model.corpus.slowdowns import BY_NAME, INVERSE_OF, SLOWDOWNS, Slowdown
from sidecar.catalog import Catalog, load_catalog
from sidecar.rules import RULES
from sidecar.verify import OutcomeStatus, ReadOnlySession, Verifier, VerifierConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "slowdowns"
CASES = [case for path in sorted(FIXTURES.glob("*.sql")) for case in parse_fixture(path)]
FIRING = [case for case in CASES if case.expected_sql is not None]
RULE_CASES = [case for path in sorted((FIXTURES.parent / "rules").glob("*.sql")) for case in parse_fixture(path)
              if case.expected_sql is not None]


def _slowdown(name: str) -> Slowdown:
    return getattr(importlib.import_module(f"model.corpus.slowdowns.{name}"), name)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def demo_catalog(demo_dsn: str) -> Catalog:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        return load_catalog(conn, ["users", "products", "orders", "events"])


@pytest.fixture(scope="module")
def verifier(demo_dsn: str) -> Iterator[Verifier]:
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=60_000) as session:
        yield Verifier(session, VerifierConfig(statement_timeout_ms=60_000))


def test_every_slowdown_has_fixtures_that_fire_and_one_that_must_not() -> None:
    assert {path.stem for path in FIXTURES.glob("*.sql")} == {s.__name__ for s in SLOWDOWNS}
    for slowdown in SLOWDOWNS:
        cases = [case for case in CASES if case.rule == slowdown.__name__]
        assert sum(case.expected_sql is not None for case in cases) >= 2, slowdown.__name__
        assert sum(case.expected_sql is None for case in cases) >= 1, slowdown.__name__


def test_the_registry_inverts_every_rule_and_leaves_headroom() -> None:
    assert len(SLOWDOWNS) >= 15
    assert set(INVERSE_OF) == {rule.__name__ for rule in RULES}
    assert set(INVERSE_OF.values()) <= set(BY_NAME)
    assert len(set(BY_NAME) - set(INVERSE_OF.values())) >= 5


@pytest.mark.parametrize("rule", sorted(INVERSE_OF))
def test_each_inverse_fires_on_its_rules_rewrites(rule: str, demo_catalog: Catalog) -> None:
    """Applied to what the rule wrote for its own fixtures, the inverse fires on at least one."""
    written = [case.expected_sql for case in RULE_CASES if case.rule == rule and case.expected_sql]
    inverse = BY_NAME[INVERSE_OF[rule]]
    fired = [sql for sql in written if inverse(sqlglot.parse_one(sql, read="postgres"), demo_catalog) is not None]
    assert fired, f"{inverse.__name__} fires on none of the {len(written)} rewrites of {rule}"


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.rule}: {case.title}")
def test_slowdown_output(case: RuleCase, demo_catalog: Catalog) -> None:
    tree = sqlglot.parse_one(case.input_sql, read="postgres")
    before = tree.sql(dialect="postgres")
    result = _slowdown(case.rule)(tree, demo_catalog)
    assert tree.sql(dialect="postgres") == before, "the transformation mutated its input"
    if case.expected_sql is None:
        assert result is None, result.sql(dialect="postgres") if result is not None else ""
    else:
        assert result is not None, "the transformation did not fire"
        expected = sqlglot.parse_one(case.expected_sql, read="postgres").sql(dialect="postgres")
        assert result.sql(dialect="postgres") == expected


@pytest.mark.parametrize("case", FIRING, ids=lambda case: f"{case.rule}: {case.title}")
def test_the_verifier_calls_each_slow_form_equivalent(case: RuleCase, verifier: Verifier) -> None:
    assert case.expected_sql is not None
    outcome = verifier.check_equivalence(verifier.prepare(case.input_sql), case.expected_sql)
    assert outcome.status == OutcomeStatus.EQUIVALENT, outcome.detail
    instances = outcome.evidence.perturbed_instances
    assert instances is not None and not instances.skipped and instances.tried
