"""The backend interface: prompts in, n completions per prompt out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sidecar.catalog import Catalog


@dataclass(frozen=True)
class Prompt:
    query: str
    """The SQL statement to rewrite."""
    catalog: Catalog
    """Schema facts of the tables the query references."""
    text: str = ""
    """The rendered model prompt; backends that need no prompt (rules) ignore it."""


@dataclass(frozen=True)
class Completion:
    text: str
    """The generated text; for the rules backend, the rewritten SQL itself."""
    source: str
    """Who produced it, e.g. ``rules:sargable_predicates`` or ``vllm:<model dir>``."""


class Backend(Protocol):
    name: str

    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int,
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ) -> list[list[Completion]]:
        """Return, for each prompt in order, at most ``n`` completions."""
        ...
