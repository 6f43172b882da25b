"""The model path of the pipeline with a scripted backend: prompts, extraction, EXPLAIN-driven
self-correction (LASER §5.3), counterexample feedback, selection, and the evidence of it all.

The backend is scripted (it answers from a list) so that each test fixes what the "model" says;
everything else is real: the demo database, the verifier, the pipeline.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from laser import demo
from sidecar.backends.base import Completion, Message, ModelInfo, Prompt
from sidecar.backends.rules import RulesBackend
from sidecar.config import SidecarConfig
from sidecar.pipeline import RewritePipeline
from sidecar.prompting.retrieval import DemoPool

SLOW = "SELECT count(*) AS n FROM orders WHERE created_at::date = DATE '2024-03-01'"
FAST = ("SELECT count(*) AS n FROM orders WHERE created_at >= DATE '2024-03-01' "
        "AND created_at < DATE '2024-03-01' + 1")
WRONG = "SELECT count(*) AS n FROM orders WHERE created_at >= DATE '2024-03-01'"


def fenced(sql: str) -> str:
    return f"Here is a faster version.\n```sql\n{sql}\n```\nIt lets PostgreSQL use the index."


@dataclass
class ScriptedBackend:
    """Answers the i-th prompt it is sent with answers[i]; records every prompt."""

    answers: list[str]
    name: str = "scripted"
    model: str = "scripted-model"
    version: str = "test"
    prompts: list[tuple[Message, ...]] = field(default_factory=list)

    def generate(self, prompts: Sequence[Prompt], n: int | Sequence[int], temperature: float = 0.0,
                 max_tokens: int = 1024) -> list[list[Completion]]:
        out = []
        for prompt in prompts:
            self.prompts.append(prompt.messages)
            text = self.answers.pop(0) if self.answers else "no idea"
            out.append([Completion(text, "scripted:test", tokens=len(text.split()))])
        return out

    def info(self) -> ModelInfo:
        return ModelInfo(backend=self.name, model=self.model, version=self.version)


@pytest.fixture(scope="module")
def config(cluster) -> SidecarConfig:
    return SidecarConfig(dsn=cluster.sidecar_dsn(), timed_runs=3, demonstrations=2)


def rewrite(config: SidecarConfig, backend: ScriptedBackend, query: str = SLOW, rules: bool = False,
            pool: DemoPool | None = None, pipeline: RewritePipeline | None = None):
    pipeline = pipeline or RewritePipeline(config, model=backend, rules=RulesBackend() if rules else None,
                                           demonstrations=pool)
    return pipeline.rewrite(query, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE)


def test_prompt_carries_schema_plan_and_query(config) -> None:
    backend = ScriptedBackend([fenced(FAST)])
    result = rewrite(config, backend)
    system, user = backend.prompts[0]
    assert system.role == "system" and "equivalent" in system.content
    assert "table public.orders" in user.content and "created_at timestamp" in user.content
    assert "primary key (id)" in user.content
    assert "Plan of the query (EXPLAIN):" in user.content and "Seq Scan on orders" in user.content
    assert user.content.rstrip().endswith(f"```sql\n{SLOW}\n```")
    assert result.status == "improved", result.message
    assert result.source == "scripted:test" and result.rewritten_sql == FAST


def test_syntax_error_is_repaired_in_a_later_round(config) -> None:
    broken = FAST.replace("SELECT", "SELEC", 1)
    backend = ScriptedBackend([fenced(broken), fenced(FAST)])
    result = rewrite(config, backend)
    assert result.status == "improved", result.message
    assert result.rewritten_sql == FAST
    # The repair request continues the conversation: the model's answer, then PostgreSQL's error.
    repair = backend.prompts[1]
    assert [m.role for m in repair] == ["system", "user", "assistant", "user"]
    assert repair[2].content == fenced(broken)
    assert 'syntax error at or near "SELEC"' in repair[3].content
    evidence = result.evidence()
    first, second = evidence["attempts"]
    # PostgreSQL's grammar (the verifier's guard parses with it) rejects it before EXPLAIN, as the
    # verifier itself would.
    assert first["status"] == "guard_refused" and first["generation"]["stage"] == "guard"
    assert first["generation"]["repaired_by"] == second["generation"]["draft"] == 1
    assert second["status"] == "faster" and second["generation"]["kind"] == "repair"
    assert second["generation"]["round"] == 1 and second["generation"]["parent"] == 0
    assert evidence["generation"]["repairs"] == 1 and evidence["generation"]["repaired"] == 1
    assert evidence["generation"]["tokens"] == sum(len(fenced(s).split()) for s in (broken, FAST))


def test_unknown_column_error_is_fed_back(config) -> None:
    backend = ScriptedBackend([fenced(FAST.replace("created_at >=", "created >=")), fenced(FAST)])
    result = rewrite(config, backend)
    assert result.status == "improved"
    assert 'column "created" does not exist' in backend.prompts[1][-1].content


def test_missing_statement_is_asked_for_again(config) -> None:
    backend = ScriptedBackend(["I would add an index on created_at.", fenced(FAST)])
    result = rewrite(config, backend)
    assert result.status == "improved"
    assert "contains no SQL statement" in backend.prompts[1][-1].content
    assert result.evidence()["attempts"][0]["status"] == "extraction_fail"


def test_rounds_are_capped_at_three_and_the_original_is_returned(config) -> None:
    backend = ScriptedBackend(["gibberish"] * 10)
    result = rewrite(config, backend)
    assert result.status == "no_verified_improvement"
    assert result.rewritten_sql == SLOW
    assert len(backend.prompts) == 4  # the request and three repairs
    statuses = [a["status"] for a in result.evidence()["attempts"]]
    assert statuses == ["extraction_fail"] * 4
    assert "extraction_fail" in result.message


def test_counterexample_is_fed_back_once(config) -> None:
    backend = ScriptedBackend([fenced(WRONG), fenced(FAST), fenced(WRONG)])
    result = rewrite(config, backend)
    assert result.status == "improved", result.message
    assert result.rewritten_sql == FAST
    feedback = backend.prompts[1][-1].content
    assert "not equivalent" in feedback and "the results differ" in feedback
    assert len(backend.prompts) == 2  # once only: the third scripted answer is never asked for
    kinds = [(a["status"], a["generation"]["kind"]) for a in result.evidence()["attempts"]]
    assert kinds == [("not_equivalent", "initial"), ("faster", "counterexample")]


def test_write_attempt_from_a_model_is_refused_and_nothing_changes(config, admin) -> None:
    before = admin.execute("SELECT count(*) FROM orders").fetchone()
    backend = ScriptedBackend([fenced("DELETE FROM orders RETURNING 1")] * 4)
    result = rewrite(config, backend)
    assert result.status == "no_verified_improvement"
    assert admin.execute("SELECT count(*) FROM orders").fetchone() == before
    attempts = result.evidence()["attempts"]
    assert [a["status"] for a in attempts] == ["guard_refused"] * 4
    assert "only" in backend.prompts[1][-1].content.lower()  # the refusal is fed back like an error


def test_rules_and_model_share_one_pool(config) -> None:
    backend = ScriptedBackend([fenced(FAST)])
    result = rewrite(config, backend, rules=True)
    sources = {a.source for a in result.attempts}
    assert "scripted:test" in sources and any(s.startswith("rules:") for s in sources)
    assert result.backend == "scripted+rules"
    assert result.status == "improved"


def test_own_verified_wins_become_demonstrations(config, admin) -> None:
    admin.execute("DELETE FROM laser.rewrite_wins")  # laser_rewrite's wins from other tests would compete
    pool = DemoPool(embedder=None)
    pipeline = RewritePipeline(config, model=ScriptedBackend([fenced(FAST)]), demonstrations=pool)
    first = rewrite(config, pipeline.model, pipeline=pipeline)  # type: ignore[arg-type]
    assert first.status == "improved" and first.speedup >= 1.5
    other = SLOW.replace("2024-03-01", "2024-04-02")
    backend = ScriptedBackend(["no idea"] * 4)
    pipeline.model = backend
    second = rewrite(config, backend, query=other, pipeline=pipeline)
    user = backend.prompts[0][1].content
    assert "Example 1, a verified rewrite on this database" in user and FAST in user
    shown = second.evidence()["demonstrations"]
    assert shown[0]["original_sql"] == SLOW and shown[0]["origin"] == "this sidecar"


CORRELATED = ("SELECT u.id FROM users u WHERE (SELECT count(*) FROM orders o WHERE o.user_id = u.id) > $1")
CORRELATED_FAST = ("SELECT u.id FROM users u LEFT JOIN (SELECT user_id, count(*) AS n FROM orders GROUP BY user_id) c "
                   "ON c.user_id = u.id WHERE coalesce(c.n, 0) > $1")


def _advisory(admin, role: str, speedup: float, tag: str) -> None:
    admin.execute(
        """INSERT INTO laser.advisories (database, query_hash, role, normalized_sql, original_sql, rewritten_sql,
                                         backend, speedup, speedup_min, original_ms, rewrite_ms, outcome,
                                         calls, mean_exec_ms, total_exec_ms)
           VALUES (current_database(), %s, %s, %s, %s, %s, 'rules', %s, %s, 100, 10, '{}', 5, 100, 500)""",
        (f"test-demo-{tag}", role, CORRELATED + f" /* {tag} */", CORRELATED, CORRELATED_FAST, speedup, speedup))


def test_database_demonstrations_are_the_callers_verified_advisories(config, admin, demo_dsn) -> None:
    import psycopg

    admin.execute("DELETE FROM laser.advisories WHERE query_hash LIKE 'test-demo-%'")
    try:
        _advisory(admin, demo.DEMO_ROLE, 3.0, "mine")
        _advisory(admin, "postgres", 3.0, "superuser")  # another role's statement: never shown to shop
        _advisory(admin, demo.DEMO_ROLE, 1.2, "slow")   # below the pool's 1.5x
        with psycopg.connect(demo_dsn) as conn:
            rows = conn.execute("SELECT original_sql, speedup FROM laser.demonstrations").fetchall()
        assert [r[0] for r in rows if r[0].startswith(CORRELATED)] == [CORRELATED + " /* mine */"]

        backend = ScriptedBackend(["no idea"] * 4)
        query = "SELECT u.email FROM users u WHERE (SELECT count(*) FROM orders o WHERE o.user_id = u.id) > 70"
        result = rewrite(config, backend, query=query, pool=DemoPool(embedder=None))
        shown = result.evidence()["demonstrations"]
        assert shown[0]["original_sql"] == CORRELATED + " /* mine */" and shown[0]["origin"] == "database"
        assert CORRELATED_FAST in backend.prompts[0][1].content
        assert all("superuser" not in d["original_sql"] for d in shown)
    finally:
        admin.execute("DELETE FROM laser.advisories WHERE query_hash LIKE 'test-demo-%'")


def test_a_reformatted_query_is_answered_from_the_cache(config) -> None:
    backend = ScriptedBackend([fenced(FAST)])
    pipeline = RewritePipeline(config, model=backend)
    first = rewrite(config, backend, pipeline=pipeline)
    layout = SLOW.replace("SELECT count(*)", "select   COUNT(*)\n").replace(" WHERE ", "\n  where ")
    again = rewrite(config, backend, query=layout, pipeline=pipeline)
    assert first.status == again.status == "improved" and again.cached and not first.cached
    assert again.original_sql == layout and again.rewritten_sql == FAST
    assert len(backend.prompts) == 1  # the model was asked once
    other = rewrite(config, backend, query=SLOW.replace("03-01", "03-02"), pipeline=pipeline)
    assert not other.cached  # another constant is another query
