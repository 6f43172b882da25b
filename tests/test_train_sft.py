"""`laser train sft` on a corpus, through TRL, against the real demo database: the fine-tuned model,
served by the transformers backend with the prompt the sidecar itself builds, answers with its
targets (training and serving render the same prompt)."""
from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from laser import cli
from model.corpus import structure
from model.corpus.build import schema_manifest
from model.corpus.slowdowns.exists_to_count import exists_to_count
from model.corpus.slowdowns.in_to_count import in_to_count
from model.sft_data import corpus_examples
from model.tiny import build_tiny_model
from sidecar.backends.transformers_backend import TransformersBackend
from sidecar.catalog import load_catalog
from sidecar.pipeline import model_prompt
from sidecar.verify import ReadOnlySession, Verifier, guard

SEEDS = [
    "SELECT p.category, count(*) FROM products AS p WHERE p.id IN (SELECT o.product_id FROM orders AS o "
    "WHERE o.quantity > 3 AND o.status = 'refunded') GROUP BY p.category",
    "SELECT u.country, count(*) FROM users AS u WHERE EXISTS (SELECT 1 FROM orders AS o WHERE o.user_id = u.id "
    "AND o.status = 'refunded') GROUP BY u.country",
]


@pytest.fixture(scope="module")
def corpus(demo_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two pairs written as `laser corpus` writes them (the slow forms made by the reverse optimizer)."""
    out = tmp_path_factory.mktemp("corpus") / "pairs.jsonl"
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        manifest = schema_manifest(conn)
        catalog = load_catalog(conn, [("public", "products"), ("public", "orders"), ("public", "users")])
    lines = []
    for seed, (name, slowdown) in zip(SEEDS, [("in_to_count", in_to_count), ("exists_to_count", exists_to_count)],
                                      strict=True):
        slow = slowdown(structure.parse(seed), catalog)
        assert slow is not None
        lines.append(json.dumps({"seed_sql": seed, "slow_sql": slow.sql(dialect="postgres"), "path": [name],
                                 "split": "train", "slowdown": 3.0}))
    out.write_text("\n".join(lines) + "\n")
    out.with_name(out.name + ".schema.json").write_text(json.dumps(manifest))
    return out


def test_sft_through_trl_reproduces_its_targets_with_the_served_prompt(
        corpus: Path, demo_dsn: str, tmp_path: Path) -> None:
    examples = corpus_examples(corpus, dsn=demo_dsn, with_rationale=True)
    assert len(examples) == 2 and all("To make this query faster" in target for _, target in examples)
    texts = [m.content for messages, _ in examples for m in messages] + [target for _, target in examples]
    base = build_tiny_model(tmp_path / "base", texts, seed=0)
    out = tmp_path / "tuned"
    code = cli.main(["train", "sft", "--corpus", str(corpus), "--model-dir", str(base), "--out", str(out),
                     "--dsn", demo_dsn, "--rationale", "--steps", "150", "--lr", "3e-3", "--batch-size", "2"])
    assert code == 0
    backend = TransformersBackend(out, device="cpu")
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=30_000) as session:
        verifier = Verifier(session)
        for row, (_, expected) in zip(rows, examples, strict=True):
            statement = guard(row["slow_sql"])
            catalog = load_catalog(session.connection, list(statement.tables))
            served = model_prompt(statement.text, catalog, verifier.prepare(statement), [])  # the sidecar's prompt
            [[answer]] = backend.generate([served], n=1, max_tokens=400)
            assert answer.text == expected
            assert row["seed_sql"] in answer.text


def test_without_a_database_the_manifest_gives_the_schema(corpus: Path) -> None:
    [(messages, target), _] = corpus_examples(corpus)
    assert "table public.orders" in messages[1].content and "```sql" in target
    assert "To make this query faster" not in target
    corpus.with_name(corpus.name + ".schema.json").rename(corpus.with_name("moved.json"))
    try:
        with pytest.raises(ValueError, match="schema.json is missing"):
            corpus_examples(corpus)
    finally:
        corpus.with_name("moved.json").rename(corpus.with_name(corpus.name + ".schema.json"))


def test_lora_training_learns_and_merges_into_a_plain_model(tmp_path: Path) -> None:
    from model.sft import train
    from sidecar.backends.base import Message, Prompt
    from sidecar.catalog import Catalog

    examples = [((Message("system", "Rewrite."), Message("user", "SELECT a FROM t WHERE x + 0 = 1")),
                 "```sql\nSELECT a FROM t WHERE x = 1\n```"),
                ((Message("system", "Rewrite."), Message("user", "SELECT b FROM u WHERE y || '' = 'k'")),
                 "```sql\nSELECT b FROM u WHERE y = 'k'\n```")]
    base = build_tiny_model(tmp_path / "base", [m.content for e, _ in examples for m in e] + [t for _, t in examples])
    losses = train(base, examples, steps=60, lr=1e-2, batch_size=2, out_dir=tmp_path / "lora", lora_r=8, log_every=0)
    # A rank-8 adapter on a 64-wide model learns part of the way (about 5.7 -> 4.5 here), not all of it.
    assert len(losses) == 60 and losses[-1] < 0.85 * losses[0], losses
    assert not (tmp_path / "lora" / "adapter_config.json").exists()  # merged: the sidecar loads it unchanged
    [[answer]] = TransformersBackend(tmp_path / "lora", device="cpu").generate(
        [Prompt("", Catalog(), examples[0][0])], n=1, max_tokens=8)
    assert answer.tokens >= 1


def test_an_adapter_alone_serves_what_the_merged_model_serves(tmp_path: Path) -> None:
    from model.sft import train
    from sidecar.backends.base import Message, Prompt
    from sidecar.backends.errors import BackendError
    from sidecar.catalog import Catalog
    from sidecar.config import SidecarConfig

    examples = [((Message("system", "Rewrite."), Message("user", "SELECT a FROM t WHERE x + 0 = 1")),
                 "```sql\nSELECT a FROM t WHERE x = 1\n```")]
    base = build_tiny_model(tmp_path / "base", [m.content for e, _ in examples for m in e] + [t for _, t in examples])
    for name, merge in (("merged", True), ("adapter", False)):
        train(base, examples, steps=30, lr=1e-2, batch_size=1, out_dir=tmp_path / name, lora_r=4, log_every=0,
              merge=merge, seed=3)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert sum(f.stat().st_size for f in (tmp_path / "adapter").iterdir()) < (tmp_path / "merged" /
                                                                             "model.safetensors").stat().st_size
    prompt = [Prompt("", Catalog(), examples[0][0])]
    merged = TransformersBackend(tmp_path / "merged", device="cpu").generate(prompt, n=1, max_tokens=16)
    served = TransformersBackend(base, device="cpu", adapter=tmp_path / "adapter")
    assert served.generate(prompt, n=1, max_tokens=16)[0][0].text == merged[0][0].text
    assert "adapter" in served.info().model
    plain = TransformersBackend(base, device="cpu").generate(prompt, n=1, max_tokens=16)
    assert plain[0][0].text != merged[0][0].text  # the adapter did change what the base says
    with pytest.raises(BackendError, match="not a PEFT adapter"):
        TransformersBackend(base, device="cpu", adapter=tmp_path / "merged")
    with pytest.raises(ValueError, match="needs a model backend"):
        SidecarConfig(dsn="host=/tmp", adapter=str(tmp_path / "adapter"))
    assert cli.main(["train", "sft", "--corpus", str(tmp_path / "none.jsonl"), "--model-dir", str(base),
                     "--out", str(tmp_path / "x"), "--adapter-only"]) == 2


def test_every_transformation_has_a_rationale() -> None:
    from model.corpus.slowdowns import BY_NAME
    from model.rationale import UNDO

    assert set(BY_NAME) <= set(UNDO)
