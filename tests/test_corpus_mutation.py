"""Free-form expansion of SQL-MCTS: a real (tiny, locally trained) model asked through the sidecar's
prompt module for a slower equivalent query; its answer goes through the verifier like a rule's."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("torch")

from model.corpus import structure
from model.corpus.build import CorpusConfig, SeedQuery, build
from model.corpus.evaluate import PoolEvaluator
from model.corpus.mutation import ModelMutation
from model.corpus.search import SearchConfig, grow, slow_nodes
from model.corpus.slowdowns.in_to_count import in_to_count
from model.pool import VerifierPool
from model.sft import train
from model.tiny import build_tiny_model
from sidecar.backends.transformers_backend import TransformersBackend
from sidecar.catalog import load_catalog
from sidecar.prompting.prompts import slowdown_messages

SEED = structure.normalized(
    "SELECT p.category, count(*) FROM products AS p WHERE p.id IN (SELECT o.product_id FROM orders AS o "
    "WHERE o.quantity > 3 AND o.status = 'refunded') GROUP BY p.category")


def test_a_trained_model_proposes_a_slower_equivalent_that_the_verifier_confirms(demo_dsn: str,
                                                                                   tmp_path: Path) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders")])
    slower = in_to_count(structure.parse(SEED), catalog)
    assert slower is not None
    answer = f"```sql\n{slower.sql(dialect='postgres')}\n```"
    messages = slowdown_messages(SEED, catalog)
    model_dir = build_tiny_model(tmp_path / "mutator", [m.content for m in messages] + [answer], seed=0)
    train(model_dir, [(messages, answer)], steps=120, lr=3e-3, batch_size=1, seed=0, log_every=1000)
    mutation = ModelMutation(TransformersBackend(model_dir, device="cpu"), temperature=0.0)

    with VerifierPool(demo_dsn, workers=1) as pool:
        root, _ = grow(SEED, catalog, PoolEvaluator(pool, SEED, 10_000), random.Random(0),
                       SearchConfig(iterations=1, width=1, max_depth=1), strategies=[mutation])
    assert mutation.stats.calls == 1 and mutation.stats.proposed == 1, mutation.stats
    [child] = root.children
    assert child.strategy == "model_mutation"
    assert structure.normalized(child.sql) == structure.normalized(slower)
    assert child in slow_nodes(root, 2.0, timed_out=True), child.evaluation  # executed, equivalent, slower


def test_an_untrained_models_answers_are_checked_like_any_other(demo_dsn: str, tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "random", [SEED, "```sql\nSELECT 1\n```"], seed=1)
    out = tmp_path / "c.jsonl"
    config = CorpusConfig(workers=1, backend="transformers", model_dir=str(model_dir), device="cpu",
                          search=SearchConfig(iterations=1, width=20, max_depth=1))
    summary = build(demo_dsn, [SeedQuery("refunded", SEED)], out, config, log=io.StringIO())
    assert summary.seeds_done == 1 and summary.model["calls"] == 1, summary
    # Garbage gives no variant (no SQL, unparsable) or one the verifier rejects: never a pair.
    assert all("model_mutation" not in json.loads(line)["path"] for line in out.read_text().splitlines())
    with pytest.raises(ValueError, match="model directory"):
        CorpusConfig(backend="transformers")
