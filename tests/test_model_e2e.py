"""A language model end to end, with no download: a tiny model is built and fine-tuned here on a few
known rewrites, served by a real sidecar (`--backend transformers --model-dir DIR`), and
`laser_rewrite` in the database returns its candidate, verified faster. A random model's garbage is
rejected cleanly, with the original returned.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sidecars import running_sidecar

from laser import demo
from model import sft, tiny
from sidecar.backends.base import plain_text
from sidecar.backends.rules import RulesBackend
from sidecar.backends.transformers_backend import TransformersBackend
from sidecar.config import SidecarConfig
from sidecar.pipeline import RewritePipeline
from sidecar.prompting import prompts
from sidecar.verify import GuardError, guard

ROOT = Path(__file__).resolve().parent.parent

# Known rewrites (sargable date ranges; the rules backend verifies each 4-120x faster on the demo data).
KNOWN = [
    ("SELECT count(*) AS n FROM orders WHERE created_at::date = DATE '2024-03-01'",
     "SELECT count(*) AS n FROM orders WHERE created_at >= DATE '2024-03-01' AND created_at < DATE '2024-03-02'"),
    ("SELECT count(*) AS n FROM events WHERE created_at::date = DATE '2024-02-10'",
     "SELECT count(*) AS n FROM events WHERE created_at >= DATE '2024-02-10' AND created_at < DATE '2024-02-11'"),
    ("SELECT sum(amount) AS revenue FROM orders WHERE date_trunc('month', created_at) = TIMESTAMP '2024-02-01'",
     "SELECT sum(amount) AS revenue FROM orders WHERE created_at >= TIMESTAMP '2024-02-01' "
     "AND created_at < TIMESTAMP '2024-03-01'"),
]

# A rewrite the model is trained to get wrong first (a syntax error) and right once PostgreSQL's
# error is fed back: self-correction with a real model.
REPAIRED = ("SELECT sum(amount) AS revenue FROM orders WHERE created_at::date = DATE '2024-01-15'",
            "SELEC sum(amount) AS revenue FROM orders WHERE created_at >= DATE '2024-01-15' "
            "AND created_at < DATE '2024-01-16'",
            "SELECT sum(amount) AS revenue FROM orders WHERE created_at >= DATE '2024-01-15' "
            "AND created_at < DATE '2024-01-16'")


def answer(sql: str) -> str:
    return f"```sql\n{sql}\n```"


@pytest.fixture(scope="module")
def config(cluster) -> SidecarConfig:
    return SidecarConfig(dsn=cluster.sidecar_dsn(), demonstrations=0, max_new_tokens=96)


@pytest.fixture(scope="module")
def trained_model(config: SidecarConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama fine-tuned on the prompts the sidecar will render for KNOWN (exactly those)."""
    prompter = RewritePipeline(config, rules=RulesBackend())
    examples = [(prompter.prompt(query, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE).messages, answer(rewrite))
                for query, rewrite in KNOWN]
    query, broken, fixed = REPAIRED
    first = prompter.prompt(query, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE).messages
    with pytest.raises(GuardError) as error:  # what the sidecar's check will say about the broken answer
        guard(broken)
    examples += [(first, answer(broken)),
                 (prompts.repair_messages(first, answer(broken), str(error.value)), answer(fixed))]
    directory = tmp_path_factory.mktemp("tiny-laser")
    texts = [plain_text(messages) + completion for messages, completion in examples]
    tiny.build_tiny_model(directory, texts, arch="llama", hidden_size=64, layers=2, heads=4, seed=0)
    losses = sft.train(directory, examples, steps=300, lr=3e-3, batch_size=4, seed=0, log_every=100)
    assert losses[-1] < 0.05, losses[-10:]
    return directory


@pytest.fixture(scope="module")
def model_sidecar(cluster, trained_model: Path) -> Iterator[str]:
    with running_sidecar(cluster, "--backend", "transformers", "--model-dir", str(trained_model), "--device", "cpu",
                         "--no-rules", "--demonstrations", "0", "--max-new-tokens", "96",
                         log=cluster.state_dir / "sidecar-model-test.log", timeout_s=120) as address:
        yield address


def test_laser_rewrite_returns_the_models_verified_rewrite(model_sidecar: str, demo_dsn: str,
                                                           trained_model: Path) -> None:
    query, expected = KNOWN[0]
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (model_sidecar,))
        rewritten = conn.execute("SELECT laser_rewrite(%s)", (query,)).fetchone()[0]
        evidence = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()[0]
        info = conn.execute("SELECT laser_model_info()").fetchone()[0]
    assert rewritten == expected
    assert evidence["verified"] and evidence["speedup"] >= 2.0, evidence["message"]
    assert evidence["source"] == f"transformers:{trained_model.name}"
    assert evidence["backend"] == "transformers" and evidence["model"] == str(trained_model)
    assert evidence["generation"]["tokens"] > 0 and evidence["generation"]["tokens_per_s"] > 0
    assert evidence["generation_ms"] > 0 and evidence["verification_ms"] > 0
    assert [a["source"] for a in evidence["attempts"]] == [f"transformers:{trained_model.name}"]
    assert info["backend"] == "transformers" and info["model"] == str(trained_model)
    assert info["device"] == "cpu" and info["details"]["parameters"] > 0
    assert info["rules_alongside"] is False and info["repair_rounds"] == 3


def test_each_known_query_gets_its_own_rewrite(model_sidecar: str, demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (model_sidecar,))
        for query, expected in KNOWN[1:]:
            evidence = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()[0]
            assert evidence["rewritten_sql"] == expected, evidence["attempts"]
            assert evidence["verified"], evidence["message"]


def test_the_model_repairs_its_syntax_error_after_feedback(model_sidecar: str, demo_dsn: str) -> None:
    query, broken, fixed = REPAIRED
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (model_sidecar,))
        evidence = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()[0]
    assert evidence["verified"] and evidence["rewritten_sql"] == fixed, evidence["message"]
    first, second = evidence["attempts"]
    assert first["sql"] == broken and first["status"] == "guard_refused"
    assert 'syntax error at or near "SELEC"' in first["detail"]
    assert first["generation"]["repaired_by"] == 1
    assert second["generation"]["kind"] == "repair" and second["status"] == "faster"
    assert evidence["generation"]["repairs"] == 1 and evidence["generation"]["repaired"] == 1


def test_random_model_garbage_is_rejected_cleanly(config: SidecarConfig, tmp_path: Path) -> None:
    texts = [plain_text(RewritePipeline(config, rules=RulesBackend()).prompt(
        KNOWN[0][0], demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE).messages)]
    directory = tiny.build_tiny_model(tmp_path / "random", texts, arch="qwen3", seed=1)
    backend = TransformersBackend(directory, device="cpu")
    pipeline = RewritePipeline(SidecarConfig(dsn=config.dsn, demonstrations=0, max_new_tokens=48), model=backend)
    result = pipeline.rewrite(KNOWN[0][0], demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE)
    assert result.status == "no_verified_improvement"
    assert result.rewritten_sql == KNOWN[0][0]
    statuses = {a.outcome.status.value for a in result.attempts}
    assert statuses <= {"extraction_fail", "guard_refused", "exec_error"}, statuses
    generation = result.evidence()["generation"]
    assert generation["drafts"] == 4 and generation["repairs"] == 3  # greedy: one line, three repairs
    assert 0 < generation["tokens"] <= 4 * 48
