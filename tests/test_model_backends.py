"""The model backends on tiny random models built in a temporary directory (no database, no GPU).

Covers loading, sampling and greedy decoding, batching with left padding, the error paths, the
counters in ModelInfo, the vLLM backend without vLLM, and a fine-tuning round trip: ``model.sft``
teaches a tiny model three rewrites, which the transformers backend then reproduces exactly.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from model.sft import train
from model.tiny import build_tiny_model
from sidecar.backends.base import Message, Prompt
from sidecar.backends.errors import BackendError
from sidecar.backends.transformers_backend import TransformersBackend, encode_prompt
from sidecar.backends.vllm_backend import VllmBackend
from sidecar.catalog import Catalog

SYSTEM = "Rewrite the PostgreSQL query so that it runs faster. Answer with one SQL statement."

REWRITES = [
    (
        "SELECT * FROM orders WHERE extract(year FROM o_date) = 2024",
        "```sql\nSELECT * FROM orders WHERE o_date >= DATE '2024-01-01' AND o_date < DATE '2025-01-01'\n```",
    ),
    (
        "SELECT c_name FROM customer WHERE c_id IN (SELECT o_cust FROM orders)",
        "```sql\nSELECT c_name FROM customer c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.o_cust = c.c_id)\n```",
    ),
    (
        "SELECT DISTINCT p.p_id FROM part p JOIN lineitem l ON l.l_part = p.p_id",
        "```sql\nSELECT p.p_id FROM part p WHERE EXISTS (SELECT 1 FROM lineitem l WHERE l.l_part = p.p_id)\n```",
    ),
]

CORPUS = [SYSTEM] + [text for pair in REWRITES for text in pair]


def chat(query: str) -> tuple[Message, ...]:
    return (Message("system", SYSTEM), Message("user", query))


def prompt(query: str) -> Prompt:
    return Prompt(query, Catalog(), chat(query))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", CORPUS, arch="llama")


@pytest.fixture(scope="module")
def backend(tiny_dir: Path) -> TransformersBackend:
    return TransformersBackend(tiny_dir, device="cpu")


TRAINING_STEPS = 200


class SftRun(NamedTuple):
    model_dir: Path
    losses: list[float]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> SftRun:
    """Fine-tune a fresh tiny model on the three rewrites (a few seconds on one CPU core)."""
    model_dir = build_tiny_model(tmp_path_factory.mktemp("models") / "sft-llama", CORPUS, arch="llama", seed=0)
    examples = [(chat(query), rewrite) for query, rewrite in REWRITES]
    losses = train(model_dir, examples, steps=TRAINING_STEPS, lr=3e-3, batch_size=3, seed=0, log_every=100)
    return SftRun(model_dir, losses)


@pytest.fixture(scope="module")
def tuned(sft_run: SftRun) -> TransformersBackend:
    return TransformersBackend(sft_run.model_dir, device="cpu")


def test_sampling_returns_n_completions_per_prompt(backend: TransformersBackend, tiny_dir: Path) -> None:
    torch.manual_seed(0)
    results = backend.generate([prompt(q) for q, _ in REWRITES[:2]], n=3, temperature=1.0, max_tokens=16)
    assert len(results) == 2
    for group in results:
        assert len(group) == 3
        for completion in group:
            assert 0 < completion.tokens <= 16
            assert completion.source == f"transformers:{tiny_dir.name}"
            assert isinstance(completion.text, str)
    # A random model with a vocabulary of hundreds does not sample six identical sequences.
    assert len({c.text for group in results for c in group}) > 1


def test_greedy_returns_one_deterministic_completion(backend: TransformersBackend) -> None:
    prompts = [prompt(q) for q, _ in REWRITES]
    first = backend.generate(prompts, n=4, temperature=0.0, max_tokens=12)
    second = backend.generate(prompts, n=4, temperature=0.0, max_tokens=12)
    assert [len(group) for group in first] == [1, 1, 1]
    assert first == second
    assert all(0 < group[0].tokens <= 12 for group in first)


def test_a_batch_decodes_like_each_prompt_alone(tuned: TransformersBackend) -> None:
    # The fine-tuned model: its output depends on every prompt token, so padding that leaked into
    # attention or positions would change it (a random model's output hardly depends on the prompt).
    prompts = [prompt(REWRITES[0][0]), prompt(REWRITES[1][0])]
    lengths = {len(encode_prompt(tuned.tokenizer, p.messages, p.query)) for p in prompts}
    assert len(lengths) == 2, "the prompts must differ in length, so that the batch needs padding"
    together = tuned.generate(prompts, n=1, max_tokens=64)
    alone = [tuned.generate([p], n=1, max_tokens=64)[0] for p in prompts]
    assert together == alone
    assert [group[0].text for group in together] == [REWRITES[0][1], REWRITES[1][1]]


def test_prompt_without_messages_uses_the_query(backend: TransformersBackend) -> None:
    bare = Prompt("SELECT * FROM orders", Catalog())
    [[completion]] = backend.generate([bare], n=1, max_tokens=8)
    assert 0 < completion.tokens <= 8


def test_qwen3_model_loads_and_generates(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "tiny-qwen3", CORPUS, arch="qwen3", hidden_size=32, heads=2)
    qwen = TransformersBackend(model_dir, device="cpu")
    [[completion]] = qwen.generate([prompt(REWRITES[0][0])], n=1, max_tokens=10)
    assert 0 < completion.tokens <= 10
    assert completion.source == "transformers:tiny-qwen3"
    assert qwen.info().details["architecture"] == "Qwen3ForCausalLM"


def test_missing_directory_raises_backend_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(BackendError, match="does not exist") as caught:
        TransformersBackend(missing)
    assert str(missing) in str(caught.value)


def test_directory_without_config_raises_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="config.json") as caught:
        TransformersBackend(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_unloadable_model_raises_backend_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(BackendError, match="cannot load") as caught:
        TransformersBackend(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_over_long_prompt_raises_value_error(backend: TransformersBackend) -> None:
    before = backend.counters.prompts
    too_long = prompt("SELECT 1 FROM orders WHERE " + " OR ".join(f"o_id = {i}" for i in range(1500)))
    with pytest.raises(ValueError, match="context window of 4096 tokens"):
        backend.generate([prompt("SELECT 1"), too_long], n=1, max_tokens=1024)
    assert backend.counters.prompts == before, "nothing may be generated for a rejected call"


def test_info_reports_model_and_counters(tiny_dir: Path) -> None:
    fresh = TransformersBackend(tiny_dir, device="cpu", batch_size=2)
    results = fresh.generate([prompt(q) for q, _ in REWRITES], n=2, temperature=0.8, max_tokens=8)
    info = fresh.info()
    assert (info.backend, info.model, info.device) == ("transformers", str(tiny_dir), "cpu")
    assert info.version.startswith("transformers ") and ", torch " in info.version
    details = info.details
    assert details["parameters"] > 0
    assert details["dtype"] == "float32"
    assert details["context_length"] == 4096
    assert details["chat_template"] is True
    assert details["prompts"] == 3
    assert details["completions"] == 6 == sum(len(group) for group in results)
    assert details["generated_tokens"] == sum(c.tokens for group in results for c in group) > 0
    assert details["generation_seconds"] > 0


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_raises_backend_error(tiny_dir: Path) -> None:
    with pytest.raises(BackendError, match=r"needs the vllm package \(pip install 'laser-pg\[vllm\]'\)"):
        VllmBackend(tiny_dir)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed (the [vllm] extra, "
                                                                  "a GPU machine)")
def test_vllm_backend_generates_what_the_transformers_backend_generates(tuned: TransformersBackend,
                                                                       sft_run: SftRun) -> None:
    """Where vLLM is installed: the same fine-tuned model, the same prompts (encoded by the same
    helpers), greedy decoding: the same rewrites; sampling gives n completions per prompt."""
    engine = VllmBackend(sft_run.model_dir, gpu_memory_utilization=0.2, seed=0)
    prompts = [prompt(query) for query, _ in REWRITES]
    greedy = engine.generate(prompts, n=1, max_tokens=96)
    assert [group[0].text for group in greedy] == [rewrite for _, rewrite in REWRITES]
    reference = tuned.generate(prompts, n=1, max_tokens=96)
    assert [(g[0].text, g[0].tokens) for g in greedy] == [(g[0].text, g[0].tokens) for g in reference]
    sampled = engine.generate(prompts, n=3, temperature=1.0, max_tokens=16)
    assert [len(group) for group in sampled] == [3, 3, 3]
    assert all(c.tokens > 0 and c.source.startswith("vllm:") for group in sampled for c in group)
    info = engine.info()
    assert info.backend == "vllm" and info.details["completions"] >= 12


def test_fine_tuned_model_reproduces_its_training_rewrites(tuned: TransformersBackend, sft_run: SftRun) -> None:
    assert len(sft_run.losses) == TRAINING_STEPS
    assert sft_run.losses[-1] < 0.05 < sft_run.losses[0]
    results = tuned.generate([prompt(query) for query, _ in REWRITES], n=1, max_tokens=96)
    assert [group[0].text for group in results] == [rewrite for _, rewrite in REWRITES]
    # Each completion stopped at EOS: its tokens are the rewrite's tokens plus the EOS.
    expected = [len(tuned.tokenizer(rewrite, add_special_tokens=False)["input_ids"]) + 1 for _, rewrite in REWRITES]
    assert [group[0].tokens for group in results] == expected
    assert max(expected) < 96


def test_sft_cli_trains_from_jsonl(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from model.sft import load_examples, main

    lines = [
        json.dumps({"messages": [{"role": m.role, "content": m.content} for m in chat(q)], "completion": c})
        for q, c in REWRITES
    ]
    examples_file = tmp_path / "examples.jsonl"
    examples_file.write_text("\n".join(lines) + "\n\n")
    assert load_examples(examples_file) == [(chat(q), c) for q, c in REWRITES]
    out_dir = tmp_path / "out"
    main(["--model-dir", str(tiny_dir), "--examples", str(examples_file), "--steps", "4", "--log-every", "2",
          "--out-dir", str(out_dir)])
    printed = capsys.readouterr().out
    assert "step 2/4 loss " in printed and "step 4/4 loss " in printed
    assert TransformersBackend(out_dir, device="cpu").info().details["parameters"] > 0

    examples_file.write_text('{"messages": []}\n')
    with pytest.raises(ValueError, match=r"examples.jsonl:1"):
        load_examples(examples_file)


def test_ragged_groups_give_each_prompt_its_own_count(backend: TransformersBackend) -> None:
    queries = [prompt(q) for q, _ in REWRITES]
    sampled = backend.generate(queries, n=[2, 0, 3], temperature=1.0, max_tokens=8)
    assert [len(group) for group in sampled] == [2, 0, 3]
    assert [len(group) for group in backend.generate(queries, n=[2, 0, 3], max_tokens=8)] == [1, 0, 1]
    # The same prompt alone, greedily, decodes as it does inside a ragged call.
    alone = backend.generate([queries[2]], n=1, max_tokens=8)[0][0].text
    assert backend.generate(queries, n=[0, 0, 4], max_tokens=8)[2][0].text == alone
    with pytest.raises(ValueError, match="2 completion counts for 3 prompts"):
        backend.generate(queries, n=[1, 1])
