"""Verification-driven self-correction (LASER §5.3, SPA's retry with reflection).

A model backend writes n candidates. Each is extracted from its completion and checked with EXPLAIN
(the cheapest executability check the database offers). A candidate without a statement, or one
PostgreSQL rejects, goes back to the model in the same conversation with the reason — the DBMS error
text — and the model answers again; at most `max_rounds` such rounds. What survives EXPLAIN goes on
to the verifier. A candidate the verifier finds not equivalent can be sent back once more with its
counterexample (:meth:`SelfCorrector.feedback`).

Every draft is kept, repaired or not, so the evidence shows the whole history: the round, what was
wrong, which draft repaired which, and the tokens and seconds spent generating vs checking.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.backends.base import Backend, Completion, Message, Prompt
from sidecar.prompting import prompts
from sidecar.prompting.extract import extract_sql

Check = Callable[[str], tuple[str, str] | None]
"""Check a statement before verification: None when it may go on, else (stage, error message),
e.g. ("guard", "only read-only statements ...") or ("explain", 'syntax error at or near ...')."""


@dataclass
class Draft:
    """One completion and what became of it."""

    completion: Completion
    conversation: tuple[Message, ...]
    """The turns the completion answers."""
    kind: str = "initial"
    """"initial", "repair" (after an error) or "counterexample" (after a non-equivalent answer)."""
    round: int = 0
    """0 for the first answer; k for the k-th correction in its line."""
    parent: int | None = None
    """Index (in the report's drafts) of the draft this one corrects."""
    sql: str | None = None
    """The extracted statement."""
    error: str = ""
    """Why it cannot go to the verifier: no statement found, or PostgreSQL's EXPLAIN error."""
    stage: str = ""
    """Where it failed when `error` is set: "extraction", or the stage the check names ("guard", "explain")."""
    repaired_by: int | None = None

    @property
    def ready(self) -> bool:
        """Extracted and accepted by EXPLAIN: a candidate for the verifier."""
        return self.sql is not None and not self.error

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "round": self.round, "parent": self.parent, "repaired_by": self.repaired_by,
                "tokens": self.completion.tokens, "stage": self.stage, "error": self.error}


@dataclass
class GenerationReport:
    drafts: list[Draft] = field(default_factory=list)
    generation_s: float = 0.0
    """Seconds inside the backend."""
    check_s: float = 0.0
    """Seconds extracting and EXPLAINing."""
    calls: int = 0
    """Calls to the backend (one per round, all prompts of a round batched)."""
    refused: list[str] = field(default_factory=list)
    """Why the backend refused a call (e.g. a conversation grown past the model's context)."""

    @property
    def tokens(self) -> int:
        return sum(d.completion.tokens for d in self.drafts)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.generation_s if self.generation_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        repairs = [d for d in self.drafts if d.kind == "repair"]
        return {
            "drafts": len(self.drafts),
            "rounds": max((d.round for d in self.drafts), default=0),
            "repairs": len(repairs),
            "repaired": sum(1 for d in repairs if d.ready),
            "counterexample_feedback": sum(1 for d in self.drafts if d.kind == "counterexample"),
            "extraction_failures": sum(1 for d in self.drafts if d.stage == "extraction"),
            "check_failures": sum(1 for d in self.drafts if d.stage not in ("", "extraction")),
            "backend_calls": self.calls,
            "refused": self.refused,
            "tokens": self.tokens,
            "generation_ms": round(self.generation_s * 1000.0, 3),
            "check_ms": round(self.check_s * 1000.0, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
        }


class SelfCorrector:
    """Generates, checks and repairs candidates with one backend; stops early at a deadline."""

    def __init__(self, backend: Backend, check: Check, max_rounds: int = 3, temperature: float = 0.0,
                 max_tokens: int = 1024, deadline: float | None = None) -> None:
        if max_rounds < 0:
            raise ValueError("max_rounds must not be negative")
        self.backend = backend
        self.check = check
        self.max_rounds = max_rounds
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.deadline = deadline
        self.report = GenerationReport()

    def generate(self, prompt: Prompt, n: int) -> list[Draft]:
        """n first answers to `prompt`, each repaired until EXPLAIN accepts it or the rounds run out.

        Returns the drafts ready for the verifier (each line's last, accepted draft).
        """
        completions = self._call([prompt], n)[0]
        start = len(self.report.drafts)
        for completion in completions:
            self.report.drafts.append(Draft(completion, prompt.messages))
        return self._settle(prompt, list(range(start, len(self.report.drafts))))

    def feedback(self, prompt: Prompt, draft: Draft, counterexample: Mapping[str, Any],
                 detail: str = "") -> list[Draft]:
        """Send a verified-not-equivalent draft back once with its counterexample; the answer is
        checked and repaired like any other. Returns the ready drafts."""
        conversation = prompts.counterexample_messages(draft.conversation, draft.completion.text,
                                                       counterexample, detail)
        parent = self.report.drafts.index(draft)
        completions = self._call([Prompt(prompt.query, prompt.catalog, conversation)], 1)[0]
        start = len(self.report.drafts)
        for completion in completions:
            self.report.drafts.append(Draft(completion, conversation, kind="counterexample",
                                            round=draft.round + 1, parent=parent))
        return self._settle(prompt, list(range(start, len(self.report.drafts))))

    def _settle(self, prompt: Prompt, pending: list[int]) -> list[Draft]:
        ready: list[Draft] = []
        corrections = 0
        while pending:
            failing: list[Draft] = []
            for index in pending:
                draft = self.report.drafts[index]
                self._inspect(draft)
                (ready if draft.ready else failing).append(draft)
            if not failing or corrections >= self.max_rounds or self._past_deadline():
                break
            corrections += 1
            repair_prompts = [Prompt(prompt.query, prompt.catalog, self._repair_turns(d)) for d in failing]
            answers = self._call(repair_prompts, 1)
            pending = []
            for draft, asked, completions in zip(failing, repair_prompts, answers, strict=True):
                if not completions:
                    continue
                repair = Draft(completions[0], asked.messages, kind="repair", round=draft.round + 1,
                               parent=self.report.drafts.index(draft))
                self.report.drafts.append(repair)
                draft.repaired_by = len(self.report.drafts) - 1
                pending.append(len(self.report.drafts) - 1)
        return ready

    def _repair_turns(self, draft: Draft) -> tuple[Message, ...]:
        if draft.stage == "extraction":
            return prompts.extraction_messages(draft.conversation, draft.completion.text)
        return prompts.repair_messages(draft.conversation, draft.completion.text, draft.error)

    def _inspect(self, draft: Draft) -> None:
        started = time.perf_counter()
        try:
            extraction = extract_sql(draft.completion.text)
            if extraction.sql is None:
                draft.error, draft.stage = "the completion holds no SQL statement", "extraction"
                return
            draft.sql = extraction.sql
            failure = self.check(extraction.sql)
            if failure is not None:
                draft.stage, draft.error = failure
        finally:
            self.report.check_s += time.perf_counter() - started

    def _call(self, batch: Sequence[Prompt], n: int) -> list[list[Completion]]:
        if self._past_deadline():
            return [[] for _ in batch]
        started = time.perf_counter()
        try:
            return self.backend.generate(batch, n=n, temperature=self.temperature, max_tokens=self.max_tokens)
        except ValueError as exc:  # the prompt does not fit the model: this line of drafts ends here
            self.report.refused.append(str(exc))
            return [[] for _ in batch]
        finally:
            self.report.generation_s += time.perf_counter() - started
            self.report.calls += 1

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline
