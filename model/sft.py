"""Supervised fine-tuning of a local causal LM on (chat messages, completion) examples.

The prompt of each example is encoded exactly as the transformers backend encodes it at serving time
(``sidecar.backends.transformers_backend.encode_prompt``); the completion follows it, then EOS, and
the loss covers only the completion and its EOS. Training is TRL's ``SFTTrainer`` (completion-only
loss, optionally a PEFT LoRA adapter); this module only encodes the examples the way the sidecar
serves them, which TRL cannot know.

CLI: ``python -m model.sft --model-dir D --examples file.jsonl --steps N``, where each JSONL line is
``{"messages": [{"role": ..., "content": ...}, ...], "completion": "..."}``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, TrainerCallback

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


class _Losses(TrainerCallback):
    """Collects the training loss of every step (``logging_steps=1``) and prints progress."""

    def __init__(self, steps: int, log_every: int) -> None:
        self.losses: list[float] = []
        self.steps = steps
        self.log_every = log_every
        self.started = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        self.losses.append(float(logs["loss"]))
        step = len(self.losses)
        if self.log_every > 0 and (step % self.log_every == 0 or step == self.steps):
            print(f"step {step}/{self.steps} loss {self.losses[-1]:.3f} ({time.perf_counter() - self.started:.1f}s)",
                  flush=True)


def train(
    model_dir: str | Path,
    examples: Sequence[Example],
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 4,
    seed: int = 0,
    log_every: int = 50,
    out_dir: str | Path | None = None,
    lora_r: int = 0,
    merge: bool = True,
) -> list[float]:
    """Fine-tune the model in ``model_dir`` on ``examples`` for ``steps`` optimizer steps with TRL's
    ``SFTTrainer`` and save model and tokenizer to ``out_dir`` (default: ``model_dir``). Returns the
    loss of every step.

    The examples are tokenized here, by ``encode_example`` (the serving encoding), and handed to TRL
    already tokenized with a completion mask, so TRL's completion-only loss covers exactly the
    completion and its EOS. ``lora_r`` > 0 trains a PEFT LoRA adapter of that rank on every linear
    layer instead of all weights, then merges it, so ``out_dir`` is a plain model directory the
    sidecar loads unchanged; with ``merge=False`` the adapter alone is written (PEFT's format), which
    the sidecar loads with ``--adapter`` over the base. bf16 on a GPU that supports it, fp32 on the CPU.
    """
    from datasets import Dataset
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    if not examples:
        raise ValueError("no examples to train on")
    if steps < 1 or batch_size < 1 or lora_r < 0:
        raise ValueError("steps and batch_size must be at least 1, lora_r not negative")
    source = Path(model_dir)
    target = Path(out_dir) if out_dir is not None else source
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True,
                                                 dtype=torch.bfloat16 if bf16 else torch.float32)
    rows = []
    for example in examples:
        ids, labels = encode_example(tokenizer, example)
        rows.append({"input_ids": ids, "completion_mask": [0 if label == IGNORE else 1 for label in labels]})
    peft_config = None
    if lora_r > 0:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    losses = _Losses(steps, log_every)
    with tempfile.TemporaryDirectory() as scratch:
        config = SFTConfig(
            output_dir=scratch, max_steps=steps, learning_rate=lr, per_device_train_batch_size=batch_size,
            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, logging_steps=1,
            save_strategy="no", report_to="none", disable_tqdm=True, seed=seed, data_seed=seed,
            completion_only_loss=True, bf16=bf16, use_cpu=not gpu, dataloader_num_workers=0,
            max_length=None, remove_unused_columns=False,
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                             processing_class=tokenizer, peft_config=peft_config, callbacks=[losses])
        trainer.train()
    trained: Any = trainer.model
    if lora_r > 0 and merge:
        trained = trained.merge_and_unload()
    trained.eval()
    # Under torchrun / accelerate launch the trainer ran data-parallel and the replicas are equal:
    # the first process writes.
    if trainer.accelerator.is_main_process:
        target.mkdir(parents=True, exist_ok=True)
        trained.save_pretrained(target)
        tokenizer.save_pretrained(target)
    trainer.accelerator.wait_for_everyone()
    return losses.losses


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
    parser.add_argument("--lora-r", type=int, default=0, help="train a LoRA adapter of this rank, then merge it")
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
        lora_r=args.lora_r,
    )
    print(f"trained {len(losses)} steps, final loss {losses[-1]:.4f}; saved to {args.out_dir or args.model_dir}")


if __name__ == "__main__":
    main()
