"""The vLLM backend: a local Hugging Face causal LM served by an in-process vLLM engine on a GPU.

This module imports without vLLM (or torch) installed; :class:`VllmBackend` imports them when it is
constructed and raises :class:`BackendError` when they are missing. Prompts are encoded with the
same helpers as the transformers backend and handed to vLLM as token ids, so both backends feed a
model exactly the same tokens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sidecar.backends.base import Completion, ModelInfo, Prompt, completion_counts
from sidecar.backends.errors import BackendError

_SAMPLING_KEYS = ("top_p", "top_k", "min_p")
"""Settings of the model's generation_config.json that sampling keeps, as the transformers backend does."""
_DECODING_KEYS = ("repetition_penalty",)
"""Settings of the model's generation_config.json that greedy decoding keeps too."""


def decoding_defaults(model_dir: Path) -> dict[str, Any]:
    """The model's own top-p, top-k, min-p and repetition penalty from its generation_config.json
    (those it sets; empty when there is no such file)."""
    path = model_dir / "generation_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {key: config[key] for key in _SAMPLING_KEYS + _DECODING_KEYS if config.get(key) is not None}


class VllmBackend:
    """Completions from ``vllm.LLM``: one ``SamplingParams(n, temperature, max_tokens)`` per prompt.

    ``temperature <= 0`` decodes greedily with one completion per prompt; ``temperature > 0`` samples
    ``n``. Like the transformers backend, decoding keeps the repetition penalty of the model's
    generation_config.json, and sampling its top-p, top-k and min-p (vLLM's own defaults would ignore
    them). vLLM schedules all prompts of a call together; calls are serialised.
    """

    name = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        seed: int | None = None,
        adapter: str | Path | None = None,
    ) -> None:
        try:
            import vllm
        except (ImportError, OSError) as exc:  # absent, or installed without its native libraries
            raise BackendError(
                "the vllm backend needs the vllm package (pip install 'laser-pg[vllm]') and a GPU; "
                f"importing vllm failed: {exc}"
            ) from exc
        from sidecar.backends.transformers_backend import (
            GenerationCounters,
            context_length,
            require_adapter_dir,
            require_model_dir,
        )

        self._vllm = vllm
        self._path = require_model_dir(model_dir)
        self.model = str(self._path)
        options: dict[str, Any] = {"dtype": dtype, "gpu_memory_utilization": gpu_memory_utilization}
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        if seed is not None:
            options["seed"] = seed
        self.adapter = require_adapter_dir(adapter) if adapter is not None else None
        self._lora: Any = None
        if self.adapter is not None:
            # vLLM serves the adapter beside the base weights: enable LoRA with the adapter's rank
            # and name it in every generate call.
            import json

            from vllm.lora.request import LoRARequest

            rank = int(json.loads((self.adapter / "adapter_config.json").read_text()).get("r", 16))
            options.update(enable_lora=True, max_lora_rank=next(v for v in (8, 16, 32, 64, 128, 256, 512) if v >= rank),
                           max_loras=1)
            self._lora = LoRARequest(self.adapter.name, 1, str(self.adapter))
            self.model = f"{self._path} + {self.adapter}"
        try:
            self._llm = vllm.LLM(model=str(self._path), **options)
            self._tokenizer = self._llm.get_tokenizer()
        except Exception as exc:  # any failure to start the engine is reported against the directory
            raise BackendError(f"vllm cannot serve the model in {self._path}: {exc}") from exc
        model_config = getattr(getattr(self._llm, "llm_engine", None), "model_config", None)
        self._context = getattr(model_config, "max_model_len", None) or max_model_len
        if self._context is None:
            self._context = context_length(model_config.hf_config) if model_config is not None else None
        self._dtype = str(getattr(model_config, "dtype", dtype)).removeprefix("torch.")
        self._gpu_memory_utilization = gpu_memory_utilization
        self._defaults = decoding_defaults(self._path)
        self._source = f"{self.name}:{self._path.name}" + (f"+{self.adapter.name}" if self.adapter else "")
        self._lock = threading.Lock()
        self.counters = GenerationCounters()

    @property
    def version(self) -> str:
        import torch

        return f"vllm {self._vllm.__version__}, torch {torch.__version__}"

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int | Sequence[int],
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> list[list[Completion]]:
        """For each prompt in order, one greedy completion or ``n`` sampled ones (``n`` may be one
        count per prompt: one ``SamplingParams(n=k_i)`` per request).

        Raises ValueError, before generating anything, when a prompt does not fit the context window
        together with ``max_tokens`` new tokens.
        """
        from sidecar.backends.transformers_backend import encode_checked

        encoded = encode_checked(self._tokenizer, prompts, max_tokens, self._context)
        counts = completion_counts(n, len(prompts))
        if temperature <= 0:
            counts = [min(k, 1) for k in counts]
        asked = [i for i, k in enumerate(counts) if k > 0]
        results: list[list[Completion]] = [[] for _ in prompts]
        if not asked:
            return results
        greedy = {key: value for key, value in self._defaults.items() if key in _DECODING_KEYS}
        params = [self._vllm.SamplingParams(n=counts[i], temperature=temperature, max_tokens=max_tokens,
                                            **self._defaults) if temperature > 0 else
                  self._vllm.SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, **greedy)
                  for i in asked]
        requests = [{"prompt_token_ids": encoded[i]} for i in asked]
        with self._lock:
            started = time.perf_counter()
            outputs = self._llm.generate(requests, params, use_tqdm=False, lora_request=self._lora)
            elapsed = time.perf_counter() - started
            for i, request in zip(asked, outputs, strict=True):
                results[i] = [Completion(text=o.text, source=self._source, tokens=len(o.token_ids))
                              for o in request.outputs]
            self.counters.add(len(prompts), results, elapsed)
        return results

    def info(self) -> ModelInfo:
        from sidecar.backends.transformers_backend import uses_chat_template

        details: dict[str, Any] = {
            "dtype": self._dtype,
            "context_length": self._context,
            "chat_template": uses_chat_template(self._tokenizer),
            "gpu_memory_utilization": self._gpu_memory_utilization,
            "decoding_defaults": dict(self._defaults),
            "vllm": self._vllm.__version__,
            **asdict(self.counters),
        }
        return ModelInfo(backend=self.name, model=self.model, version=self.version, device="cuda", details=details)
