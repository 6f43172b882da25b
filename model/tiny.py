"""Tiny, randomly initialised causal LMs with their own small tokenizer, for tests and experiments.

A model built here is a complete Hugging Face model directory (config, weights, tokenizer, chat
template) that ``sidecar.backends.transformers_backend.TransformersBackend`` loads like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

Arch = Literal["llama", "qwen2", "qwen3"]

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
"""Ids 0, 1 and 2, in this order."""

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "### {{ message['role'] }}\n{{ message['content'] }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}### assistant\n{% endif %}"
)
"""The role headers of ``sidecar.backends.base.plain_text``, after the BOS token."""

_CONFIGS: dict[str, Callable[..., PretrainedConfig]] = {"llama": LlamaConfig, "qwen2": Qwen2Config,
    "qwen3": Qwen3Config}


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, with <pad>, <s>, </s> and a chat template.

    Byte-level means every string can be encoded and decodes back exactly; the vocabulary is at most
    ``vocab_size`` (smaller when the texts do not have that many merges).

    >>> tok = build_tokenizer(["SELECT a FROM t WHERE b = 1"], vocab_size=300)
    >>> tok.decode(tok("SELECT 'x' , b")["input_ids"], skip_special_tokens=True)
    "SELECT 'x' , b"
    >>> tok.convert_ids_to_tokens(tok("SELECT")["input_ids"])[0]
    '<s>'
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, backend.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(
    arch: Arch,
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 4096,
    intermediate_size: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
) -> PretrainedConfig:
    """The config of a tiny ``arch`` model sized to ``tokenizer``'s vocabulary (the MLP width
    defaults to twice the hidden size, key/value heads to ``heads``, head size to hidden/heads;
    setting them gives a real model's shape, e.g. Qwen3-0.6B's, for throughput measurements)."""
    if arch not in _CONFIGS:
        raise ValueError(f"unknown arch {arch!r}: use one of {', '.join(_CONFIGS)}")
    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of heads {heads}")
    return _CONFIGS[arch](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        head_dim=head_dim or hidden_size // heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_model(
    out_dir: str | Path,
    texts: Iterable[str],
    arch: Arch = "llama",
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 4096,
    seed: int = 0,
    vocab_size: int = 2000,
    intermediate_size: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
) -> Path:
    """Train a tokenizer on ``texts``, initialise an ``arch`` model at random (``seed``), and save both
    into ``out_dir`` (created if needed). Returns the directory."""
    path = Path(out_dir)
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    config = tiny_config(arch, tokenizer, hidden_size, layers, heads, max_positions,
                         intermediate_size=intermediate_size, kv_heads=kv_heads, head_dim=head_dim)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
