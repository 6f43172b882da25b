"""Supervised fine-tuning of a local causal LM on (chat messages, completion) examples.

The prompt of each example is encoded exactly as the transformers backend encodes it at serving time
(``sidecar.backends.transformers_backend.encode_prompt``); the completion follows it, then EOS, and
the loss covers only the completion and its EOS. Plain PyTorch with AdamW: small enough for a CPU.

CLI: ``python -m model.sft --model-dir D --examples file.jsonl --steps N``, where each JSONL line is
``{"messages": [{"role": ..., "content": ...}, ...], "completion": "..."}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from sidecar.backends.base import Message
from sidecar.backends.transformers_backend import encode_prompt

Example = tuple[Sequence[Message], str]
"""The chat turns of a prompt, and the completion the model should answer with."""

IGNORE = -100
"""The label that excludes a position from the loss."""


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example) -> tuple[list[int], list[int]]:
    """Input ids and labels of one example: the prompt (labels ignored), then the completion and EOS."""
    messages, completion = example
    if not messages:
        raise ValueError("an example needs at least one message")
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token to end completions with")
    prompt = encode_prompt(tokenizer, messages, "")
    answer = list(tokenizer(completion, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def collate(
    encoded: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels of a batch.

    >>> ids, mask, labels = collate([([5, 6, 7], [-100, 6, 7]), ([5, 8], [-100, 8])], pad_id=0)
    >>> ids.tolist(), mask.tolist(), labels.tolist()
    ([[5, 6, 7], [5, 8, 0]], [[1, 1, 1], [1, 1, 0]], [[-100, 6, 7], [-100, 8, -100]])
    """
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for row, (ids, targets) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(targets)] = torch.tensor(targets, dtype=torch.long)
    return input_ids, attention_mask, labels


def _batch_indices(count: int, batch_size: int, generator: torch.Generator) -> list[int]:
    """``batch_size`` random example indices out of ``count``, all distinct while ``count`` allows."""
    order: list[int] = []
    while len(order) < batch_size:
        order.extend(torch.randperm(count, generator=generator).tolist())
    return order[:batch_size]


def train(
    model_dir: str | Path,
    examples: Sequence[Example],
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 4,
    seed: int = 0,
    log_every: int = 50,
    out_dir: str | Path | None = None,
) -> list[float]:
    """Fine-tune the model in ``model_dir`` on ``examples`` for ``steps`` AdamW steps on the CPU and
    save model and tokenizer to ``out_dir`` (default: ``model_dir``). Returns the loss of every step.

    Each step draws ``batch_size`` random examples (all distinct while there are enough of them).
    """
    if not examples:
        raise ValueError("no examples to train on")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be at least 1")
    source = Path(model_dir)
    target = Path(out_dir) if out_dir is not None else source
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=torch.float32)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_example(tokenizer, example) for example in examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(1, steps + 1):
        picked = _batch_indices(len(encoded), batch_size, generator)
        input_ids, attention_mask, labels = collate([encoded[i] for i in picked], pad_id)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log_every > 0 and (step % log_every == 0 or step == steps):
            print(f"step {step}/{steps} loss {losses[-1]:.3f} ({time.perf_counter() - started:.1f}s)", flush=True)
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return losses


def load_examples(path: str | Path) -> list[Example]:
    """Examples from a JSONL file of ``{"messages": [{"role", "content"}], "completion": "..."}``."""
    examples: list[Example] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = tuple(Message(m["role"], m["content"]) for m in record["messages"])
            examples.append((messages, str(record["completion"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an example ({exc})") from exc
    return examples


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m model.sft``: fine-tune a local model directory on a JSONL file of examples."""
    parser = argparse.ArgumentParser(prog="python -m model.sft", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="Hugging Face model directory to start from")
    parser.add_argument("--examples", required=True, help="JSONL file: messages and completion per line")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--out-dir", default=None, help="where to save (default: --model-dir)")
    args = parser.parse_args(argv)
    losses = train(
        args.model_dir,
        load_examples(args.examples),
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        log_every=args.log_every,
        out_dir=args.out_dir,
    )
    print(f"trained {len(losses)} steps, final loss {losses[-1]:.4f}; saved to {args.out_dir or args.model_dir}")


if __name__ == "__main__":
    main()
