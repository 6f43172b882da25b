"""OpenEnv's shape: typed Action, Observation and State, and an environment with `reset()`,
`step(action)` and a `state` property, as OpenEnv's `Environment` interface has them.

Plain dataclasses with OpenEnv's field names (an Action and an Observation carry `metadata`, an
Observation `done` and `reward`, a State `episode_id` and `step_count`) around the seed's fields;
no dependency on the openenv package. The reward is the seed's score in [0, 1]; the full reward
(breakdown, feedback), the execution report and the verifier's outcome are in the metadata.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from model.env.contract import Action, Observation
from model.env.episode import Environment


@dataclass
class SqlAction:
    """A submission: the rewrite, and the seed's analysis fields."""

    optimized_query: str = ""
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    estimated_improvement: str = ""
    approved: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_action(self) -> Action:
        return Action(optimized_query=self.optimized_query, suggestions=tuple(self.suggestions), summary=self.summary,
                      estimated_improvement=self.estimated_improvement, approved=self.approved)


@dataclass
class SqlObservation:
    """The seed's observation, with OpenEnv's `done`, `reward` and `metadata`."""

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
    done: bool = False
    reward: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, observation: Observation, done: bool = False, reward: float | None = None,
           metadata: dict[str, Any] | None = None) -> SqlObservation:
        return cls(**observation.to_json(), done=done, reward=reward, metadata=metadata or {})


@dataclass
class SqlState:
    """OpenEnv's `episode_id` and `step_count`, with the seed's state fields."""

    episode_id: str | None = None
    step_count: int = 0
    task_id: str = "none"
    max_steps: int = 0
    episode_done: bool = True
    cumulative_reward: float = 0.0
    current_task: str = "No active episode"


class SqlEnvironment:
    """OpenEnv's environment interface over an Environment (one episode at a time)."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def reset(self, seed: int | None = None, episode_id: str | None = None, task_id: str | None = None,
              **kwargs: Any) -> SqlObservation:
        """A new episode: on `task_id`, else on a task drawn with `seed`, else on the first task."""
        if task_id is None and seed is not None:
            task_id = random.Random(seed).choice(list(self.environment.tasks))
        return SqlObservation.of(self.environment.reset(task_id, episode_id=episode_id))

    def step(self, action: SqlAction, timeout_s: float | None = None, **kwargs: Any) -> SqlObservation:
        """Verify and score one submission (`timeout_s` is accepted for OpenEnv's signature; the
        verifier's own statement timeouts bound the step)."""
        result = self.environment.step(action.to_action())
        metadata = {"reward": result.reward.to_json(), **result.info}
        return SqlObservation.of(result.observation, done=result.done, reward=round(result.reward.score, 4),
                                 metadata=metadata)

    @property
    def state(self) -> SqlState:
        state = self.environment.state()
        return SqlState(episode_id=state.episode_id, step_count=state.step_count, task_id=state.task_id,
                        max_steps=state.max_steps, episode_done=state.episode_done,
                        cumulative_reward=state.cumulative_reward, current_task=state.current_task)

    def close(self) -> None:
        self.environment.close()
