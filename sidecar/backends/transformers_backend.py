"""The transformers backend: any local Hugging Face causal LM, batched generation on CPU or GPU.

The model directory is read with ``local_files_only=True``: nothing is ever downloaded. Prompts are
rendered with the tokenizer's chat template where it has one, else with :func:`plain_text`;
:func:`render_prompt` and :func:`encode_prompt` are the one definition of that rendering, shared with
the vLLM backend and with fine-tuning (``model.sft``), so that a model is trained on exactly the token
sequences it is later served.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerBase,
)

from sidecar.backends.base import Completion, Message, ModelInfo, Prompt, completion_counts, plain_text
from sidecar.backends.errors import BackendError

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def require_adapter_dir(adapter: str | Path) -> Path:
    """``adapter`` resolved, or BackendError when it is not a PEFT adapter directory.

    >>> require_adapter_dir("/nonexistent/adapter")
    Traceback (most recent call last):
    ...
    sidecar.backends.errors.BackendError: /nonexistent/adapter is not a PEFT adapter directory (no adapter_config.json)
    """
    path = Path(adapter).expanduser().resolve()
    if not (path / "adapter_config.json").is_file():
        raise BackendError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)")
    return path


def merge_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the LoRA adapter in ``adapter`` merged into its weights (generation then
    costs what the base costs); BackendError when the adapter does not fit the model."""
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise BackendError("an adapter needs PEFT: pip install 'laser-pg[train]'") from exc
    try:
        return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as exc:  # a shape or key mismatch: the adapter belongs to another base
        raise BackendError(f"the adapter in {adapter} does not fit the model: {exc}") from exc


def require_model_dir(model_dir: str | Path) -> Path:
    """The absolute model directory, or :class:`BackendError` when it is missing or has no config.json.

    >>> require_model_dir("/nonexistent/model")
    Traceback (most recent call last):
    ...
    sidecar.backends.errors.BackendError: model directory /nonexistent/model does not exist
    """
    path = Path(model_dir).expanduser().resolve()
    if not path.is_dir():
        raise BackendError(f"model directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise BackendError(f"model directory {path} has no config.json (not a Hugging Face model directory)")
    return path


def uses_chat_template(tokenizer: Any) -> bool:
    """Whether prompts for this tokenizer are rendered with its chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, messages: Sequence[Message], query: str) -> str:
    """The text a model sees for a prompt: the chat template applied to ``messages`` with the
    assistant's generation prompt, :func:`plain_text` for a tokenizer without a template, or the bare
    ``query`` when there are no messages.

    >>> render_prompt(None, [], "SELECT 1")
    'SELECT 1'
    >>> render_prompt(None, [Message("user", "SELECT 1")], "SELECT 1")
    '### user\\nSELECT 1\\n\\n### assistant\\n'
    """
    if not messages:
        return query
    if uses_chat_template(tokenizer):
        rendered = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            tokenize=False,
        )
        return str(rendered)
    return plain_text(messages)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message], query: str) -> list[int]:
    """The prompt's token ids. A chat template writes its own special tokens (BOS and role markers), so
    they are added by the tokenizer only for text that did not go through the template."""
    text = render_prompt(tokenizer, messages, query)
    templated = bool(messages) and uses_chat_template(tokenizer)
    return list(tokenizer(text, add_special_tokens=not templated)["input_ids"])


def context_length(config: Any) -> int | None:
    """The model's context window from its config, or None when the config does not say."""
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_prompt_length(index: int, length: int, max_tokens: int, context: int | None) -> None:
    """Raise ValueError when a prompt of ``length`` tokens leaves no room for ``max_tokens`` new ones.

    >>> check_prompt_length(0, 3000, 1024, 4096)
    >>> check_prompt_length(2, 3500, 1024, 4096)
    Traceback (most recent call last):
    ...
    ValueError: prompt 2 has 3500 tokens, more than the 3072 that the model's context window of 4096 tokens leaves for
    max_tokens=1024
    """
    if length == 0:
        raise ValueError(f"prompt {index} is empty: no messages, no query")
    if context is not None and length > context - max_tokens:
        raise ValueError(
            f"prompt {index} has {length} tokens, more than the {max(context - max_tokens, 0)} that the "
            f"model's context window of {context} tokens leaves for max_tokens={max_tokens}"
        )


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first GPU where there is one, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise BackendError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} requested, but torch sees no CUDA GPU")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU and float32 on the CPU; else a name such as ``float16``.

    >>> resolve_dtype("auto", torch.device("cpu"))
    torch.float32
    >>> resolve_dtype("bf16", torch.device("cpu"))
    torch.bfloat16
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype.lower()]
    except KeyError:
        raise BackendError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}") from None


def generated_length(tokens: Sequence[int], eos_ids: frozenset[int]) -> int:
    """Generated tokens up to and including the first end-of-sequence token; padding after it is not counted.

    >>> generated_length([5, 6, 2, 0, 0], frozenset({2}))
    3
    >>> generated_length([5, 6, 7], frozenset({2}))
    3
    """
    for position, token in enumerate(tokens):
        if token in eos_ids:
            return position + 1
    return len(tokens)


@dataclass
class GenerationCounters:
    """Cumulative work done by one backend instance."""

    prompts: int = 0
    completions: int = 0
    generated_tokens: int = 0
    generation_seconds: float = 0.0

    def add(self, prompts: int, results: Sequence[Sequence[Completion]], seconds: float) -> None:
        """Count one generate call."""
        self.prompts += prompts
        self.completions += sum(len(group) for group in results)
        self.generated_tokens += sum(c.tokens for group in results for c in group)
        self.generation_seconds += seconds


def encode_checked(tokenizer: Any, prompts: Sequence[Prompt], max_tokens: int, context: int | None) -> list[list[int]]:
    """Every prompt's token ids; ValueError, before anything is generated, for a bad ``max_tokens`` or
    a prompt that does not fit the context window together with ``max_tokens`` new tokens."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    encoded = [encode_prompt(tokenizer, p.messages, p.query) for p in prompts]
    for index, ids in enumerate(encoded):
        check_prompt_length(index, len(ids), max_tokens, context)
    return encoded


class TransformersBackend:
    """Completions from a local causal LM with ``transformers`` ``generate``.

    ``temperature <= 0`` decodes greedily and returns one completion per prompt (``n`` identical
    greedy outputs would be pointless); ``temperature > 0`` samples ``n`` per prompt, with the top-p,
    top-k and min-p of the model's ``generation_config.json`` where it sets them and no truncation
    where it does not (the vLLM backend samples the same way). Prompts are left-padded into batches
    of ``batch_size``; calls are serialised, so one instance can be shared by server threads.
    Decoding keeps the text exactly as generated (no clean-up of spaces before punctuation, which
    would alter SQL string literals).
    """

    name = "transformers"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        batch_size: int = 8,
        adapter: str | Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._path = require_model_dir(model_dir)
        self.adapter = require_adapter_dir(adapter) if adapter is not None else None
        self.model = str(self._path)
        self.batch_size = batch_size
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype, self._device)
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self._path, local_files_only=True)
            # Any: transformers' decorated ``PreTrainedModel.to`` does not type-check under mypy.
            loaded: Any = AutoModelForCausalLM.from_pretrained(self._path, local_files_only=True, dtype=self._dtype)
        except Exception as exc:  # any failure to load is reported against the directory
            raise BackendError(f"cannot load a causal language model from {self._path}: {exc}") from exc
        if self.adapter is not None:
            loaded = merge_adapter(loaded, self.adapter)
            self.model = f"{self._path} + {self.adapter}"
        self._model = loaded.to(self._device)
        self._model.eval()
        self._eos_ids = self._end_of_sequence_ids()
        if self._tokenizer.pad_token_id is None:
            if self._tokenizer.eos_token is None:
                raise BackendError(f"the tokenizer in {self._path} has neither a pad nor an eos token")
            self._tokenizer.pad_token = self._tokenizer.eos_token
        self._pad_id = int(self._tokenizer.pad_token_id)
        self._context = context_length(self._model.config)
        self._parameters = sum(p.numel() for p in self._model.parameters())
        self._source = f"{self.name}:{self._path.name}" + (f"+{self.adapter.name}" if self.adapter else "")
        self._lock = threading.Lock()
        self.counters = GenerationCounters()

    @property
    def version(self) -> str:
        return f"transformers {transformers.__version__}, torch {torch.__version__}"

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The loaded tokenizer (read-only use)."""
        return self._tokenizer

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int | Sequence[int],
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> list[list[Completion]]:
        """For each prompt in order, one greedy completion or ``n`` sampled ones (``n`` may be one
        count per prompt; prompts with the same count share batches, since ``generate`` returns one
        number of sequences per call).

        Raises ValueError, before generating anything, when a prompt does not fit the context window
        together with ``max_tokens`` new tokens.
        """
        encoded = encode_checked(self._tokenizer, prompts, max_tokens, self._context)
        counts = completion_counts(n, len(prompts))
        if temperature <= 0:
            counts = [min(k, 1) for k in counts]
        results: list[list[Completion]] = [[] for _ in prompts]
        with self._lock:
            started = time.perf_counter()
            for count in sorted(set(counts) - {0}):
                config = self._generation_config(count, temperature, max_tokens)
                rows = [i for i, k in enumerate(counts) if k == count]
                for first in range(0, len(rows), self.batch_size):
                    chunk = rows[first : first + self.batch_size]
                    for row, group in zip(chunk, self._generate_batch([encoded[i] for i in chunk], count, config),
                                          strict=True):
                        results[row] = group
            self.counters.add(len(prompts), results, time.perf_counter() - started)
        return results

    def info(self) -> ModelInfo:
        details: dict[str, Any] = {
            "dtype": str(self._dtype).removeprefix("torch."),
            "parameters": self._parameters,
            "context_length": self._context,
            "chat_template": uses_chat_template(self._tokenizer),
            "architecture": (getattr(self._model.config, "architectures", None) or [""])[0],
            "batch_size": self.batch_size,
            "adapter": str(self.adapter) if self.adapter is not None else None,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            **asdict(self.counters),
        }
        return ModelInfo(
            backend=self.name, model=self.model, version=self.version, device=str(self._device), details=details
        )

    def _end_of_sequence_ids(self) -> frozenset[int]:
        configured = self._model.generation_config.eos_token_id
        ids = set(configured if isinstance(configured, list) else [configured])
        ids.add(self._tokenizer.eos_token_id)
        return frozenset(int(i) for i in ids if i is not None)

    def _generation_config(self, per_prompt: int, temperature: float, max_tokens: int) -> GenerationConfig:
        config: GenerationConfig = copy.deepcopy(self._model.generation_config)
        config.max_new_tokens = max_tokens
        config.max_length = None
        config.pad_token_id = self._pad_id
        config.eos_token_id = sorted(self._eos_ids) or None
        config.num_return_sequences = per_prompt
        config.num_beams = 1
        if temperature > 0:
            config.do_sample = True
            config.temperature = temperature
            # Unset means no truncation (as in vLLM), not transformers' global default of top_k=50.
            config.top_k = 0 if config.top_k is None else config.top_k
            config.top_p = 1.0 if config.top_p is None else config.top_p
        else:
            config.do_sample = False
            config.temperature = config.top_p = config.top_k = config.min_p = None
        return config

    def _generate_batch(
        self, batch: Sequence[list[int]], per_prompt: int, config: GenerationConfig
    ) -> list[list[Completion]]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids.to(self._device),
                attention_mask=attention_mask.to(self._device),
                generation_config=config,
            )
        new_tokens = output[:, width:].tolist()
        groups: list[list[Completion]] = [[] for _ in batch]
        for row, tokens in enumerate(new_tokens):
            length = generated_length(tokens, self._eos_ids)
            text = self._tokenizer.decode(
                tokens[:length], skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            groups[row // per_prompt].append(Completion(text=str(text), source=self._source, tokens=length))
        return groups
