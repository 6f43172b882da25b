"""`laser train sft`: supervised fine-tuning on a SQL-MCTS corpus (LASER §5.1), with TRL.

The examples are the sidecar's own rewrite prompts for the corpus's slow queries (model/sft_data.py),
the targets their fast seeds; training is ``model.sft.train`` (TRL's SFTTrainer, completion-only
loss, optional LoRA). The output directory is a model the sidecar serves unchanged
(``laser sidecar --backend transformers --model-dir OUT``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.grpo.trainer import StepStats
    from model.pool import RayVerifierPool, VerifierPool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="stage", required=True)
    sft = sub.add_parser("sft", help="supervised fine-tuning on a corpus from `laser corpus`")
    sft.add_argument("--corpus", type=Path, required=True, help="a corpus JSONL written by `laser corpus`")
    sft.add_argument("--model-dir", type=Path, required=True, help="the base model (a local Hugging Face directory)")
    sft.add_argument("--out", type=Path, required=True, help="where to write the fine-tuned model")
    sft.add_argument("--dsn", help="the corpus's database: prompts get the live catalog and the EXPLAIN plan, "
                                   "exactly as served (default: the corpus's schema manifest, no plan)")
    sft.add_argument("--split", default="train", help="which pairs to train on: train (default), validation, all")
    sft.add_argument("--rationale", action="store_true",
                     help="targets start with a short rationale from the transformation path")
    sft.add_argument("--lora-r", type=int, default=0, help="train a LoRA adapter of this rank and merge it "
                                                           "(default 0: all weights)")
    sft.add_argument("--adapter-only", action="store_true",
                     help="with --lora-r: write the PEFT adapter alone (a few MB) instead of merging it into a "
                          "full model; serve it with `laser sidecar --model-dir BASE --adapter DIR`")
    sft.add_argument("--epochs", type=float, default=1.0, help="passes over the examples (default 1)")
    sft.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    sft.add_argument("--lr", type=float, default=1e-4)
    sft.add_argument("--batch-size", type=int, default=4)
    sft.add_argument("--seed", type=int, default=0)
    sft.add_argument("--log-every", type=int, default=10)


    grpo = sub.add_parser("grpo", help="SQL-GRPO on a corpus (experimental: a rising reward is not shown yet)")
    grpo.add_argument("--corpus", type=Path, required=True, help="a corpus JSONL written by `laser corpus`")
    grpo.add_argument("--model-dir", type=Path, required=True, help="the starting (SFT) model, also the KL reference")
    grpo.add_argument("--dsn", required=True, help="the corpus's database: rollouts are verified there (read-only)")
    grpo.add_argument("--out", type=Path, required=True, help="where to write the trained model")
    grpo.add_argument("--split", default="train")
    grpo.add_argument("--steps", type=int, default=50)
    grpo.add_argument("--prompts-per-step", type=int, default=4)
    grpo.add_argument("--pilot", type=int, default=2, help="k_pilot rollouts per prompt (Eq. 9)")
    grpo.add_argument("--budget", type=int, default=16, help="rollouts per step in all")
    grpo.add_argument("--max-per-prompt", type=int, default=8)
    grpo.add_argument("--no-adaptive", action="store_true", help="a fixed group size (standard GRPO)")
    grpo.add_argument("--no-anchored", action="store_true", help="the group z-score instead of Eq. 10")
    grpo.add_argument("--lr", type=float, default=1e-5)
    grpo.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    grpo.add_argument("--kl", type=float, default=0.04, help="σ of Eq. 11")
    grpo.add_argument("--updates-per-batch", type=int, default=1,
                      help="μ: optimizer steps on each batch of rollouts, the ratio clipped (Eq. 11); default 1")
    grpo.add_argument("--eval-samples", type=int, default=0,
                      help="before and after training, estimate the expected reward from this many sampled "
                           "rollouts of every prompt (same random numbers both times); default 0: no estimate")
    grpo.add_argument("--reward", choices=["laser", "spa"], default="laser",
                      help="laser: LASER Eq. 7-8 (default); spa: SPA's milestone reward (Eq. 3)")
    grpo.add_argument("--no-pgars", action="store_true", help="with --reward spa: every milestone gate open")
    grpo.add_argument("--gate-threshold", type=float, default=0.5, help="τ of SPA Eq. 2 (default 0.5)")
    grpo.add_argument("--self-improve-steps", type=int, default=0,
                      help="after --steps, this many steps on a 1:1 blend with the slow rewrites mined from the "
                           "rollouts (SPA §3.6); default 0")
    grpo.add_argument("--min-win", type=float, default=1.1,
                      help="self-improvement mines a group only if one of its rollouts won by this much")
    grpo.add_argument("--lora-r", type=int, default=0,
                      help="train a LoRA adapter of this rank (written alone to --out) instead of all weights")
    grpo.add_argument("--adapter", type=Path,
                      help="a PEFT adapter of --model-dir to start from (and to keep as the KL reference); "
                           "the trained adapter is written to --out")
    grpo.add_argument("--max-new-tokens", type=int, default=512)
    grpo.add_argument("--workers", type=int, default=2,
                      help="verifier processes for the rewards (with --engine ray: actors per database); "
                           "under torchrun, per training process, as are --prompts-per-step "
                           "and --budget")
    grpo.add_argument("--engine", choices=["local", "ray"], default="local",
                      help="local: verifier processes on this machine (default); ray: Ray actors, against the "
                           "database and its replicas, on this machine or a Ray cluster")
    grpo.add_argument("--ray-address", help="a running Ray cluster (\"auto\" or host:port); default: start a "
                                            "local Ray instance for the run")
    grpo.add_argument("--dsn-replica", action="append", default=[], metavar="DSN",
                      help="with --engine ray: a replica of the database (same schema and data), repeatable")
    grpo.add_argument("--seed", type=int, default=0)
    grpo.add_argument("--log", type=Path, help="also write one JSON line per step here")
    grpo.add_argument("--plot", type=Path, help="also draw the training curves as a PNG")


def main(args: argparse.Namespace) -> int:
    if args.stage == "grpo":
        return grpo_main(args)
    from model.sft import train
    from model.sft_data import corpus_examples

    started = time.monotonic()
    try:
        examples = corpus_examples(args.corpus, None if args.split == "all" else args.split, args.rationale,
                                   args.dsn)
    except (OSError, ValueError) as exc:
        print(f"laser train sft: {exc}", file=sys.stderr)
        return 2
    if not examples:
        print(f"laser train sft: {args.corpus} has no {args.split} pairs", file=sys.stderr)
        return 2
    if args.dsn is None:
        print("note: without --dsn the prompts carry no EXPLAIN plan, while served prompts do", file=sys.stderr)
    steps = args.steps or max(1, math.ceil(len(examples) * args.epochs / args.batch_size))
    if args.adapter_only and not args.lora_r:
        print("laser train sft: --adapter-only needs --lora-r", file=sys.stderr)
        return 2
    print(f"{len(examples)} examples, {steps} steps, batch {args.batch_size}, lr {args.lr}"
          + (f", LoRA r={args.lora_r}" if args.lora_r else ", all weights"), flush=True)
    losses = train(args.model_dir, examples, steps=steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                   log_every=args.log_every, out_dir=args.out, lora_r=args.lora_r, merge=not args.adapter_only)
    print(f"trained {len(losses)} steps in {time.monotonic() - started:.0f} s: loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}; saved to {args.out}")
    return 0


def grpo_main(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from model.grpo.distributed import World
    from model.grpo.trainer import GrpoConfig, GrpoTrainer, Task
    from model.rewards import SpaRewardConfig
    from model.sft_data import PromptRenderer, corpus_prompts
    from sidecar.verify import SessionError

    try:
        config = GrpoConfig(steps=args.steps, prompts_per_step=args.prompts_per_step, pilot=args.pilot,
                            budget=args.budget, max_per_prompt=args.max_per_prompt, adaptive=not args.no_adaptive,
                            anchored=not args.no_anchored, lr=args.lr, optimizer=args.optimizer, kl=args.kl,
                            updates_per_batch=args.updates_per_batch, max_new_tokens=args.max_new_tokens,
                            seed=args.seed, reward=args.reward, pgars=not args.no_pgars,
                            spa=SpaRewardConfig(gate_threshold=args.gate_threshold),
                            self_improve_steps=args.self_improve_steps, min_win=args.min_win, lora_r=args.lora_r)
        if args.adapter is not None and args.lora_r:
            raise ValueError("give --adapter (go on training that adapter) or --lora-r (a new one), not both")
        if args.adapter is not None and not (args.adapter / "adapter_config.json").is_file():
            raise ValueError(f"{args.adapter} is not a PEFT adapter directory (no adapter_config.json)")
        prompts = corpus_prompts(args.corpus, None if args.split == "all" else args.split, args.dsn)
    except (OSError, ValueError) as exc:
        print(f"laser train grpo: {exc}", file=sys.stderr)
        return 2
    if not prompts:
        print(f"laser train grpo: {args.corpus} has no {args.split} pairs", file=sys.stderr)
        return 2
    tasks = [Task(messages, row["slow_sql"]) for messages, row in prompts]
    try:
        pool = _reward_pool(args)
    except (ValueError, SessionError) as exc:
        print(f"laser train grpo: {exc}", file=sys.stderr)
        return 2
    main = World().main  # under torchrun, the first process writes the log and plot
    log = args.log.open("w") if args.log is not None and main else None
    started = time.monotonic()
    renderer = PromptRenderer.for_corpus(args.corpus, args.dsn) if config.self_improve_steps else None
    try:
        with pool:
            trainer = GrpoTrainer(args.model_dir, tasks, pool, config, log=lambda line: print(line, flush=True),
                                  render=renderer.render if renderer is not None else None, adapter=args.adapter)
            before = trainer.evaluate(args.eval_samples) if args.eval_samples > 0 else None
            for number in range(1, config.steps + config.self_improve_steps + 1):
                stats = trainer.step(number, "base" if number <= config.steps else "self-improve")
                if log is not None:
                    log.write(json.dumps(asdict(stats)) + "\n")
                    log.flush()
            after = trainer.evaluate(args.eval_samples) if args.eval_samples > 0 else None
            trainer.save(args.out)
    finally:
        if log is not None:
            log.close()
        if renderer is not None:
            renderer.close()
    history = trainer.history
    if not main:
        return 0
    if args.plot is not None:
        plot(history, args.plot)
        print(f"plot: {args.plot}")
    print(f"{len(history)} steps in {time.monotonic() - started:.0f} s; mean reward "
          f"{history[0].mean_reward:.3f} (first step) -> {history[-1].mean_reward:.3f} (last); saved to {args.out}")
    if before is not None and after is not None:
        print(f"expected reward ({args.eval_samples} rollouts of each of {len(tasks)} prompts): "
              f"{before:.3f} before -> {after:.3f} after")
    return 0


def _reward_pool(args: argparse.Namespace) -> VerifierPool | RayVerifierPool:
    from model.pool import RayVerifierPool, VerifierPool

    if args.engine == "ray":
        return RayVerifierPool([args.dsn, *args.dsn_replica], workers=args.workers, address=args.ray_address)
    if args.dsn_replica or args.ray_address:
        raise ValueError("--dsn-replica and --ray-address need --engine ray")
    return VerifierPool(args.dsn, workers=args.workers)


def plot(history: list[StepStats], path: Path) -> None:
    """Mean reward; valid, equivalent and faster shares; entropy and KL; rollouts per prompt; the
    rollout budget per complexity bucket of the prompts (how CADR spent it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from model.grpo.complexity import BUCKETS

    steps = [s.step for s in history]
    figure, axes = plt.subplots(2, 3, figsize=(15, 7))
    axes[0][0].plot(steps, [s.mean_reward for s in history])
    axes[0][0].set_title("mean reward")
    for name in ("valid", "equivalent", "faster"):
        axes[0][1].plot(steps, [getattr(s, name) for s in history], label=name)
    axes[0][1].set_title("share of rollouts")
    axes[0][1].legend()
    axes[0][2].plot(steps, [s.generating for s in history], label="sampling")
    axes[0][2].plot(steps, [s.waiting for s in history], label="waiting for rewards")
    axes[0][2].set_title("seconds per step")
    axes[0][2].legend()
    axes[1][0].plot(steps, [s.entropy for s in history], label="token entropy")
    axes[1][0].plot(steps, [s.kl for s in history], label="KL to the start model")
    axes[1][0].legend()
    axes[1][1].boxplot([s.per_prompt for s in history], positions=steps)
    axes[1][1].set_title("rollouts per prompt (CADR)")
    bottom = [0] * len(history)
    for name in (*BUCKETS, "unparsed"):
        counts = [s.budget_by_complexity.get(name, 0) for s in history]
        if any(counts):
            axes[1][2].bar(steps, counts, bottom=bottom, label=name)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    axes[1][2].set_title("rollouts per complexity bucket")
    axes[1][2].legend()
    for ax in axes[1]:
        ax.set_xlabel("step")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
