"""TRL's `environment_factory` for `GRPOTrainer`: one environment per rollout, two tools, its own reward.

    from model.env.trl import environment_factory
    trainer = GRPOTrainer(model=..., train_dataset=rows, environment_factory=environment_factory(dsn), ...)

TRL makes one `SqlRewriteEnv` per concurrent rollout, calls `reset(**row)` with the dataset row
(a `task_id` column picks the task; without one the tasks are dealt in turn) and appends what it
returns to the prompt; every other public method is a tool the model may call, described to it by
its signature and docstring: `submit_rewrite(sql)` verifies and scores a rewrite (a step of the
episode), `explain(sql)` shows the planner's plan for free. `get_reward()` is the rollout's reward:
R (`model.env.scoring.reward_value`, LASER Eq. 7-8) of the last submission, the floor ρfmt when
nothing was submitted or when any submission was refused by the guard (data-modifying, several
statements, side effects, unparseable: `explain` checks a statement without spending a step).
`dataset_rows(tasks)` gives one row per task for `datasets.Dataset.from_list`.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from model.env.contract import Action
from model.env.episode import EnvConfig, Environment
from model.env.tasks import DEMO_TASKS, Task
from sidecar.prompting.prompts import counterexample_messages, repair_messages

TOOLS_HINT = (
    "Tools: explain(sql) shows PostgreSQL's plan for a statement (free, nothing is executed); "
    "submit_rewrite(sql) verifies your rewrite against the query (same results on the live data and on "
    "perturbed copies of the tables), times it, and tells you the verdict; you have {steps} submission(s). "
    "Your reward is that of your last submission. Submit only one read-only query: anything else "
    "(data-modifying statements, several statements, functions with side effects) gets the lowest reward.")


class SqlRewriteEnv:
    """One rollout's episode. Build it through `environment_factory`; its public methods are
    TRL's tools, so it has no others."""

    def __init__(self, environment: Environment, next_task: Callable[[], str]) -> None:
        self._environment = environment
        self._next_task = next_task
        self._rewards: list[float] = []
        self._refused = False

    def reset(self, **kwargs: Any) -> str:
        """Start an episode on the row's `task_id` (or the next task); the text added to the prompt."""
        task_id = kwargs.get("task_id")
        observation = self._environment.reset(str(task_id) if task_id else self._next_task())
        self._rewards, self._refused = [], False
        return (f"\n\n{observation.task_description}\n\nSchema:\n{observation.schema_info}\n\n"
                f"Query to rewrite:\n```sql\n{observation.sql_query}\n```\n\n"
                + TOOLS_HINT.format(steps=observation.max_steps))

    def submit_rewrite(self, sql: str) -> str:
        """Submit a rewrite of the query. It is verified against the original query (the same columns
        and rows on the live data and on perturbed copies of the tables) and then timed; each call
        uses one of the episode's submissions.

        Args:
            sql: The complete rewritten SQL statement: one read-only query.

        Returns:
            The verdict (faster, wrong results, error, refused, ...), the measured speedup, and what to fix.
        """
        state = self._environment.state()
        if state.episode_done:
            return f"No submissions left ({state.step_count} of {state.max_steps} used); the episode is over."
        result = self._environment.step(Action(optimized_query=sql))
        self._rewards.append(result.reward.breakdown["reward"])
        self._refused = self._refused or result.reward.breakdown["refused"] > 0.0
        outcome = result.info["outcome"]
        lines = [f"Verdict: {result.reward.feedback}"]
        if outcome["status"] == "not_equivalent" and outcome.get("counterexample"):
            lines.append(counterexample_messages([], sql, outcome["counterexample"], outcome["detail"])[-1].content)
        elif outcome["status"] == "exec_error":
            lines.append(repair_messages([], sql, outcome["detail"])[-1].content)
        left = result.observation.max_steps - result.observation.step_count
        lines.append(f"Submissions left: {left}." if left else "No submissions left; the episode is over.")
        return "\n".join(lines)

    def explain(self, sql: str) -> str:
        """Show PostgreSQL's plan for a statement without running it (does not use a submission).

        Args:
            sql: The SQL statement to plan: one read-only query.

        Returns:
            The plan, one operator a line with estimated rows and cost, or why there is none.
        """
        return self._environment.explain(sql)

    def get_reward(self) -> float:
        """The rollout's reward: the last submission's, or the floor (see the module)."""
        floor = self._environment.config.scoring.laser.format_penalty
        if self._refused or not self._rewards:
            return floor
        return self._rewards[-1]


def environment_factory(dsn: str, tasks: Sequence[Task] = DEMO_TASKS, config: EnvConfig = EnvConfig()
                        ) -> Callable[[], SqlRewriteEnv]:
    """A zero-argument factory for `GRPOTrainer(environment_factory=...)`: each environment has its
    own Environment (and so its own database session per episode); rows without a `task_id` get
    the tasks in turn, shared across environments."""
    ids = [task.task_id for task in tasks]
    cycle = itertools.cycle(ids)
    lock = threading.Lock()

    def next_task() -> str:
        with lock:
            return next(cycle)

    def make() -> SqlRewriteEnv:
        return SqlRewriteEnv(Environment(dsn, tasks, config), next_task)

    return make


def dataset_rows(tasks: Sequence[Task] = DEMO_TASKS, repeat: int = 1) -> list[dict[str, Any]]:
    """Training rows for the factory's environments: a user turn that `reset` completes, and the task.

    >>> rows = dataset_rows(DEMO_TASKS[:2])
    >>> [row["task_id"] for row in rows], rows[0]["prompt"][0]["role"]
    (['task_1_basic_antipatterns', 'task_2_correlated_subqueries'], 'user')
    """
    instruction = "Rewrite the PostgreSQL query below into a faster query with exactly the same result."
    return [{"prompt": [{"role": "user", "content": instruction}], "task_id": task.task_id}
            for _ in range(repeat) for task in tasks]
