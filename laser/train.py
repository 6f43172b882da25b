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
    sft.add_argument("--epochs", type=float, default=1.0, help="passes over the examples (default 1)")
    sft.add_argument("--steps", type=int, help="optimizer steps (overrides --epochs)")
    sft.add_argument("--lr", type=float, default=1e-4)
    sft.add_argument("--batch-size", type=int, default=4)
    sft.add_argument("--seed", type=int, default=0)
    sft.add_argument("--log-every", type=int, default=10)


def main(args: argparse.Namespace) -> int:
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
    print(f"{len(examples)} examples, {steps} steps, batch {args.batch_size}, lr {args.lr}"
          + (f", LoRA r={args.lora_r}" if args.lora_r else ", all weights"), flush=True)
    losses = train(args.model_dir, examples, steps=steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                   log_every=args.log_every, out_dir=args.out, lora_r=args.lora_r)
    print(f"trained {len(losses)} steps in {time.monotonic() - started:.0f} s: loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}; saved to {args.out}")
    return 0
