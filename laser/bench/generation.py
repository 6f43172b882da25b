"""Where a model backend's request time goes: generation vs verification, and tokens per second.

Runs the sidecar's pipeline in this process with the transformers backend against the local
cluster's demo database (created and loaded if needed), one request per query, nothing cached, and
prints per request: status, speedup, generation ms, verification ms, tokens, tokens/s, drafts. Then a
throughput probe: the same prompts batched, sampled, at a fixed token budget.

Models load from a local directory; nothing is downloaded. Three ways to get one:

    laser bench-generation --tiny               # build a tiny Llama and fine-tune it on the rules
                                                # backend's verified rewrites of the queries
    laser bench-generation --random qwen3-0.6b  # Qwen3-0.6B's shape, random weights: realistic CPU
                                                # cost per token, garbage text
    laser bench-generation --model-dir DIR      # your own (e.g. a LASER-trained Qwen3)

Results: a table on stdout, JSON (``--json``, default ``.laser/bench/generation-<label>.json``) and a
bar plot of generation vs verification time per query next to it (when matplotlib is installed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser import demo
from laser.localdb import LocalCluster, bring_up
from sidecar.backends.base import Prompt, plain_text
from sidecar.backends.rules import RulesBackend
from sidecar.config import SidecarConfig
from sidecar.pipeline import RequestOptions, RewritePipeline

if TYPE_CHECKING:
    from sidecar.backends.transformers_backend import TransformersBackend

SHAPES: dict[str, dict[str, Any]] = {
    "qwen3-0.6b": {"arch": "qwen3", "hidden_size": 1024, "layers": 28, "heads": 16, "kv_heads": 8,
                   "head_dim": 128, "intermediate_size": 3072},
    "qwen3-tiny": {"arch": "qwen3", "hidden_size": 256, "layers": 4, "heads": 4},
}
"""Model shapes for --random (the vocabulary is the small SQL tokenizer's, not the real one's)."""

SARGABLE = [
    "SELECT count(*) AS n FROM orders WHERE created_at::date = DATE '2024-03-01'",
    "SELECT count(*) AS n FROM events WHERE created_at::date = DATE '2024-02-10'",
    "SELECT sum(amount) AS revenue FROM orders WHERE date_trunc('month', created_at) = TIMESTAMP '2024-02-01'",
]


def queries() -> list[tuple[str, str]]:
    """(name, sql): the demo workload's slow queries and three non-sargable date filters."""
    return [(q.name, q.sql) for q in demo.demo_queries()] + [(f"sargable_{i}", q) for i, q in enumerate(SARGABLE, 1)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="a local Hugging Face causal LM")
    source.add_argument("--tiny", action="store_true", help="build and fine-tune a tiny model on the rules' rewrites")
    source.add_argument("--random", choices=sorted(SHAPES), help="a randomly initialised model of this shape")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=400, help="--tiny: fine-tuning steps")
    parser.add_argument("--limit", type=int, default=0, help="only the first N queries")
    parser.add_argument("--probe-batch", type=int, default=4, help="prompts per batch in the throughput probe")
    parser.add_argument("--probe-tokens", type=int, default=64, help="tokens per completion in the throughput probe")
    parser.add_argument("--json", help="report path")


def main(args: argparse.Namespace) -> int:
    import torch  # the transformers extra: imported only when this benchmark runs

    from sidecar.backends.transformers_backend import TransformersBackend

    cluster = LocalCluster.default()
    print("starting the local PostgreSQL cluster and the demo database ...", flush=True)
    bring_up(cluster)
    demo.ensure_demo_database(cluster)
    config = SidecarConfig(dsn=cluster.sidecar_dsn(), demonstrations=0, max_new_tokens=args.max_new_tokens)
    chosen = queries()[: args.limit or None]
    prompter = RewritePipeline(config, rules=RulesBackend())
    prompts = {name: prompter.prompt(sql, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE) for name, sql in chosen}

    with tempfile.TemporaryDirectory(prefix="laser-bench-model-") as scratch:
        if args.model_dir:
            model_dir, label = Path(args.model_dir), Path(args.model_dir).name
        elif args.tiny:
            model_dir, label = _tiny_model(Path(scratch), prompter, chosen, prompts, args.steps), "tiny"
        else:
            model_dir, label = _random_model(Path(scratch), prompts, args.random), f"random-{args.random}"
        started = time.perf_counter()
        backend = TransformersBackend(model_dir, device=args.device)
        load_s = time.perf_counter() - started
        info = backend.info()
        print(f"model: {label}, {info.details.get('parameters', 0) / 1e6:.1f}M parameters, {info.device}, "
              f"{info.details.get('dtype')}, loaded in {load_s:.1f} s", flush=True)
        pipeline = RewritePipeline(config, model=backend)
        rows = []
        for i, (name, sql) in enumerate(chosen, 1):
            print(f"[{i}/{len(chosen)}] {name} ...", flush=True)
            result = pipeline.rewrite(sql, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE, RequestOptions(no_cache=True))
            generation = result.generation or {}
            rows.append({
                "name": name, "status": result.status, "speedup": round(result.speedup, 3),
                "source": result.source, "generation_ms": round(result.generation_ms, 1),
                "verification_ms": round(result.verification_ms, 1), "tokens": generation.get("tokens", 0),
                "tokens_per_s": generation.get("tokens_per_s", 0.0), "drafts": generation.get("drafts", 0),
                "repairs": generation.get("repairs", 0),
                "outcomes": [a.outcome.status.value for a in result.attempts],
            })
        probe = _probe(backend, list(prompts.values()), args.probe_batch, args.probe_tokens)

    report = {
        "meta": {"model": label, "model_dir": str(model_dir) if args.model_dir else "(built in a temporary directory)",
                 "parameters": info.details.get("parameters"), "device": info.device,
                     "dtype": info.details.get("dtype"),
                 "torch_threads": torch.get_num_threads(), "machine": _machine(), "max_new_tokens": args.max_new_tokens,
                 "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                 "command": "laser bench-generation " + " ".join(sys.argv[2:])},
        "requests": rows, "summary": _summary(rows), "probe": probe,
    }
    out = Path(args.json) if args.json else cluster.state_dir / "bench" / f"generation-{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(format_report(report))
    plot = _plot(report, out.with_suffix(".png"))
    print(f"\nreport: {out}" + (f"\nplot: {plot}" if plot else ""))
    return 0


def _tiny_model(scratch: Path, prompter: RewritePipeline, chosen: list[tuple[str, str]],
                prompts: dict[str, Prompt], steps: int) -> Path:
    """A tiny Llama fine-tuned on the rules backend's verified rewrites (distilling the rules)."""
    from model import sft, tiny

    examples = []
    for name, sql in chosen:
        result = prompter.rewrite(sql, demo.DEMO_DB, demo.DEMO_ROLE, demo.DEMO_ROLE)
        if result.status == "improved":
            examples.append((prompts[name].messages, f"```sql\n{result.rewritten_sql}\n```"))
    if not examples:
        raise SystemExit("the rules backend verified no rewrite to fine-tune on")
    print(f"fine-tuning a tiny model on {len(examples)} verified rewrites for {steps} steps ...", flush=True)
    directory = scratch / "tiny"
    tiny.build_tiny_model(directory, [plain_text(m) + c for m, c in examples], hidden_size=96, layers=2, heads=4)
    sft.train(directory, examples, steps=steps, lr=3e-3, batch_size=4, log_every=100)
    return directory


def _random_model(scratch: Path, prompts: dict[str, Prompt], shape: str) -> Path:
    from model import tiny

    print(f"building a random {shape}-shaped model ...", flush=True)
    return tiny.build_tiny_model(scratch / shape, [plain_text(p.messages) for p in prompts.values()], **SHAPES[shape])


def _probe(backend: TransformersBackend, prompts: list[Prompt], batch: int, tokens: int) -> dict[str, Any]:
    """Sampled generation at a fixed budget: tokens/s with one prompt and with a batch."""
    out = {}
    for size in sorted({1, max(1, batch)}):
        chosen = (prompts * size)[:size]
        started = time.perf_counter()
        completions = backend.generate(chosen, n=1, temperature=1.0, max_tokens=tokens)
        elapsed = time.perf_counter() - started
        generated = sum(c.tokens for group in completions for c in group)
        out[f"batch_{size}"] = {"prompts": size, "tokens": generated, "seconds": round(elapsed, 3),
                                "tokens_per_s": round(generated / elapsed, 2) if elapsed > 0 else 0.0}
    return out


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    generation = [r["generation_ms"] for r in rows]
    verification = [r["verification_ms"] for r in rows]
    tokens = sum(r["tokens"] for r in rows)
    total_generation_s = sum(generation) / 1000.0
    return {
        "requests": len(rows),
        "improved": sum(r["status"] == "improved" for r in rows),
        "generation_ms_median": round(statistics.median(generation), 1) if rows else 0.0,
        "verification_ms_median": round(statistics.median(verification), 1) if rows else 0.0,
        "generation_share": round(sum(generation) / max(sum(generation) + sum(verification), 1e-9), 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / total_generation_s, 2) if total_generation_s > 0 else 0.0,
    }


def format_report(report: dict[str, Any]) -> str:
    meta, summary = report["meta"], report["summary"]
    lines = [f"{meta['model']} ({(meta['parameters'] or 0) / 1e6:.1f}M parameters, {meta['device']}, {meta['dtype']}, "
             f"{meta['torch_threads']} threads) on {meta['machine']}, {meta['date']}",
             "",
             f"{'query':34} {'status':24} {'speedup':>8} {'gen ms':>9} {'verify ms':>10} {'tokens':>7} "
             f"{'tok/s':>8} {'drafts':>6}"]
    for r in report["requests"]:
        lines.append(f"{r['name'][:34]:34} {r['status']:24} {r['speedup']:8.2f} {r['generation_ms']:9.0f} "
                     f"{r['verification_ms']:10.0f} {r['tokens']:7d} {r['tokens_per_s']:8.1f} {r['drafts']:6d}")
    lines += ["",
              f"median generation {summary['generation_ms_median']:.0f} ms, median verification "
              f"{summary['verification_ms_median']:.0f} ms; generation is {summary['generation_share']:.0%} of "
              f"request time; {summary['tokens']} tokens at {summary['tokens_per_s']:.1f} tokens/s; "
              f"{summary['improved']}/{summary['requests']} improved"]
    for name, probe in report["probe"].items():
        lines.append(f"probe {name}: {probe['tokens']} tokens in {probe['seconds']:.2f} s = "
                     f"{probe['tokens_per_s']:.1f} tokens/s (sampled)")
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = report["requests"]
    names = [r["name"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    generation = [r["generation_ms"] / 1000 for r in rows]
    verification = [r["verification_ms"] / 1000 for r in rows]
    ax.barh(names, generation, label="generation")
    ax.barh(names, verification, left=generation, label="verification")
    ax.set_xlabel("seconds per request")
    ax.set_title(f"{report['meta']['model']}: generation vs verification ({report['meta']['device']})")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"

