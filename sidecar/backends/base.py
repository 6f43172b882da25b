"""The backend interface: prompts in, n completions per prompt out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar.catalog import Catalog


@dataclass(frozen=True)
class Message:
    """One chat turn of a model prompt."""

    role: str
    """"system", "user" or "assistant"."""
    content: str


@dataclass(frozen=True)
class Prompt:
    query: str
    """The SQL statement to rewrite."""
    catalog: Catalog
    """Schema facts of the tables the query references."""
    messages: tuple[Message, ...] = ()
    """The rendered model prompt as chat turns (sidecar.prompting.prompts); backends without a model ignore it.
    A backend applies its tokenizer's chat template, or :func:`plain_text` where there is none."""


@dataclass(frozen=True)
class Completion:
    text: str
    """The generated text; for the rules backend, the rewritten SQL itself."""
    source: str
    """Who produced it, e.g. ``rules:sargable_predicates`` or ``transformers:<model dir name>``."""
    tokens: int = 0
    """Tokens generated for this completion (0 for backends without a model)."""
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    """How it was found, for the evidence: for the rules backend, the rule sequence and the
    planner's estimate that ranked it."""


@dataclass(frozen=True)
class ModelInfo:
    """What a backend serves, for the ModelInfo RPC and the evidence."""

    backend: str
    model: str = ""
    """Model directory (or name) loaded; empty for the rules backend."""
    version: str = ""
    """Library versions behind the backend."""
    device: str = "cpu"
    details: dict[str, Any] = field(default_factory=dict)
    """Backend-specific facts: dtype, parameter count, context length, chat template, ..."""


class Backend(Protocol):
    """What every candidate generator offers; `model` and `version` describe it for ModelInfo."""

    name: str
    model: str

    @property
    def version(self) -> str: ...

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int | Sequence[int],
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> list[list[Completion]]:
        """Return, for each prompt in order, at most ``n`` completions; ``n`` may be one count per
        prompt (ragged groups: SQL-GRPO's adaptive rollout gives each prompt its own budget)."""
        ...

    def info(self) -> ModelInfo:
        ...


def completion_counts(n: int | Sequence[int], prompts: int) -> list[int]:
    """``n`` as one count per prompt: an int applies to every prompt.

    >>> completion_counts(3, 2), completion_counts([2, 0, 5], 3)
    ([3, 3], [2, 0, 5])
    >>> completion_counts([1], 2)
    Traceback (most recent call last):
    ...
    ValueError: 1 completion counts for 2 prompts
    """
    if isinstance(n, int):
        return [max(n, 0)] * prompts
    counts = [int(k) for k in n]
    if len(counts) != prompts:
        raise ValueError(f"{len(counts)} completion counts for {prompts} prompts")
    if any(k < 0 for k in counts):
        raise ValueError("completion counts must not be negative")
    return counts


def plain_text(messages: Sequence[Message]) -> str:
    """A prompt for a tokenizer without a chat template: each turn under a role header, then the
    assistant's header, so that the completion follows.

    >>> print(plain_text([Message("system", "Be brief."), Message("user", "SELECT 1")]))
    ### system
    Be brief.
    <BLANKLINE>
    ### user
    SELECT 1
    <BLANKLINE>
    ### assistant
    <BLANKLINE>
    """
    parts = [f"### {m.role}\n{m.content}\n" for m in messages]
    return "\n".join(parts) + "\n### assistant\n"
