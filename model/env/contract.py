"""The seed environment's contract: what crosses the wire, with the seed's field names.

Requests are checked here (a body that does not fit is a ContractError, which the server answers
with 400 and which changes nothing); responses are plain dataclasses with `to_json()`. Field names
are the seed's, so a client written for it reads ours unchanged; a few fields are added (the
verifier's `status` and `detail`, an `episode_id`), none renamed or removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ContractError(ValueError):
    """A request body that does not fit the contract; the message says which field and why."""


@dataclass(frozen=True)
class Action:
    """The agent's move: a rewrite, and the seed's analysis fields (reported; they weigh nothing
    in the reward unless the environment is configured to weigh them)."""

    optimized_query: str = ""
    """The complete rewritten statement; verified against the task's query. Empty: no rewrite."""
    suggestions: tuple[dict[str, Any], ...] = ()
    """Issues found, each `{issue_type, line, description, severity, fix}` (free form)."""
    summary: str = ""
    estimated_improvement: str = ""
    approved: bool = False
    """The seed's "the query is already optimal" flag."""

    @classmethod
    def from_json(cls, body: Any) -> Action:
        """An Action from a request body; ContractError when it does not fit.

        >>> Action.from_json({"optimized_query": "SELECT 1", "approved": False}).optimized_query
        'SELECT 1'
        >>> Action.from_json({"summary": "fine"})
        Traceback (most recent call last):
        ...
        model.env.contract.ContractError: optimized_query is missing (the rewritten SQL; "" for none)
        >>> Action.from_json({"optimized_query": "SELECT 1", "suggestions": "all of them"})
        Traceback (most recent call last):
        ...
        model.env.contract.ContractError: suggestions must be a list of objects
        """
        body = _object(body, "an Action")
        if "optimized_query" not in body:
            raise ContractError('optimized_query is missing (the rewritten SQL; "" for none)')
        suggestions = body.get("suggestions", [])
        if not isinstance(suggestions, list) or not all(isinstance(s, dict) for s in suggestions):
            raise ContractError("suggestions must be a list of objects")
        approved = body.get("approved", False)
        if not isinstance(approved, bool):
            raise ContractError(f"approved must be true or false, got {approved!r}")
        return cls(optimized_query=_string(body, "optimized_query"), suggestions=tuple(suggestions),
                   summary=_string(body, "summary"), estimated_improvement=_string(body, "estimated_improvement"),
                   approved=approved)

    def issue_types(self) -> list[str]:
        """The `issue_type` of each suggestion that names one, in order, without repeats.

        >>> Action(suggestions=({"issue_type": "cast"}, {"issue_type": "cast"}, {"line": 2})).issue_types()
        ['cast']
        """
        found: list[str] = []
        for suggestion in self.suggestions:
            kind = suggestion.get("issue_type")
            if isinstance(kind, str) and kind and kind not in found:
                found.append(kind)
        return found

    def to_json(self) -> dict[str, Any]:
        return {"suggestions": list(self.suggestions), "optimized_query": self.optimized_query,
                "summary": self.summary, "estimated_improvement": self.estimated_improvement,
                "approved": self.approved}


@dataclass(frozen=True)
class ExecutionReport:
    """`POST /execute`'s answer and an observation's `last_execution`: the verifier's outcome in
    the seed's terms. Times and speedup are 0.0 where nothing was timed (the candidate was refused,
    failed, differed, or its plan is the original's)."""

    original_ms: float
    optimized_ms: float
    speedup: float
    results_match: bool
    """Verified equivalent: equal results on the live data and on the perturbed instances."""
    original_rows: int
    optimized_rows: int | None
    """None when the candidate's rows were never counted (refused, failed, not executed)."""
    original_error: str | None
    optimized_error: str | None
    verdict: str
    explain_plan: str | None
    """The candidate's plan (EXPLAIN), as the verifier renders it."""
    status: str
    """The verifier's status (`faster`, `not_equivalent`, `guard_refused`, ...)."""
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"original_ms": round(self.original_ms, 3), "optimized_ms": round(self.optimized_ms, 3),
                "speedup": round(self.speedup, 4), "results_match": self.results_match,
                "original_rows": self.original_rows, "optimized_rows": self.optimized_rows,
                "original_error": self.original_error, "optimized_error": self.optimized_error,
                "verdict": self.verdict, "explain_plan": self.explain_plan, "status": self.status,
                "detail": self.detail}


@dataclass(frozen=True)
class Reward:
    """The seed's reward: `score` in [0, 1], `breakdown` of named numbers, human `feedback`."""

    score: float
    breakdown: dict[str, float]
    feedback: str

    def to_json(self) -> dict[str, Any]:
        return {"score": round(self.score, 4), "breakdown": {k: round(v, 4) for k, v in self.breakdown.items()},
                "feedback": self.feedback}


@dataclass(frozen=True)
class Observation:
    """What the agent sees: the task, its schema, and the verdict on its last submission."""

    task_id: str
    task_name: str
    task_description: str
    sql_query: str
    schema_info: str
    dialect: str
    difficulty: str
    step_count: int
    max_steps: int
    issues_found_so_far: list[str] = field(default_factory=list)
    last_execution: dict[str, Any] | None = None
    """The previous step's ExecutionReport (JSON); None before the first step."""

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "task_name": self.task_name, "task_description": self.task_description,
                "sql_query": self.sql_query, "schema_info": self.schema_info, "dialect": self.dialect,
                "difficulty": self.difficulty, "step_count": self.step_count, "max_steps": self.max_steps,
                "issues_found_so_far": list(self.issues_found_so_far), "last_execution": self.last_execution}


@dataclass(frozen=True)
class StepResult:
    observation: Observation
    reward: Reward
    done: bool
    info: dict[str, Any]
    """`execution` (the ExecutionReport), `outcome` (the verifier's full outcome with its
    evidence), `step`, `cumulative_reward`, `episode_id`."""

    def to_json(self) -> dict[str, Any]:
        return {"observation": self.observation.to_json(), "reward": self.reward.to_json(), "done": self.done,
                "info": self.info}


@dataclass(frozen=True)
class EpisodeState:
    """`GET /state`: the current episode (the seed's fields, and its id)."""

    task_id: str
    step_count: int
    max_steps: int
    episode_done: bool
    cumulative_reward: float
    current_task: str
    episode_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "step_count": self.step_count, "max_steps": self.max_steps,
                "episode_done": self.episode_done, "cumulative_reward": round(self.cumulative_reward, 4),
                "current_task": self.current_task, "episode_id": self.episode_id}


NO_EPISODE = EpisodeState(task_id="none", step_count=0, max_steps=0, episode_done=True, cumulative_reward=0.0,
                          current_task="No active episode")


# -- the other request bodies ---------------------------------------------------------------------

def reset_request(body: Any) -> str | None:
    """The task_id of a `POST /reset` body (None: no body, or no task_id: the first task).

    >>> reset_request(None), reset_request({}), reset_request({"task_id": "t"})
    (None, None, 't')
    >>> reset_request({"task_id": 3})
    Traceback (most recent call last):
    ...
    model.env.contract.ContractError: task_id must be a string, got int
    """
    if body is None:
        return None
    body = _object(body, "a reset request ({\"task_id\": ...})")
    if body.get("task_id") is None:
        return None
    task_id = _string(body, "task_id")
    return task_id or None


def execute_request(body: Any) -> tuple[str, str]:
    """(task_id, optimized_query) of a `POST /execute` body; both are required.

    >>> execute_request({"task_id": "t", "optimized_query": "SELECT 1"})
    ('t', 'SELECT 1')
    >>> execute_request({"task_id": "t", "optimized_query": "  "})
    Traceback (most recent call last):
    ...
    model.env.contract.ContractError: optimized_query is required
    """
    body = _object(body, "an execute request ({\"task_id\": ..., \"optimized_query\": ...})")
    task_id = _string(body, "task_id").strip()
    if not task_id:
        raise ContractError("task_id is required")
    query = _string(body, "optimized_query")
    if not query.strip():
        raise ContractError("optimized_query is required")
    return task_id, query


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ContractError(f"the body must be a JSON object: {what}")
    return body


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ContractError(f"{key} must be a string, got {type(value).__name__}")
    return value
