"""The environment: episodes over the verifier (reset, step, state, grader, execute, leaderboard).

One episode at a time per Environment, as in the seed: `reset` opens a new read-only database
session for the episode (closing the last one) and profiles the task's query once (its warm-up);
each `step` verifies the submitted rewrite against it with `sidecar.verify.Verifier` (guard,
EXPLAIN, equivalence on the live data and on perturbed instances, interleaved timing) and scores
the Outcome with `model.env.scoring`; the episode ends after the task's `max_steps` submissions.
`grade` scores an action without advancing the episode; `execute` verifies a query against any
task in a session of its own. Every statement runs in a READ ONLY transaction as the DSN's role
(or `role`), so nothing an agent submits can change the database; the guard refuses hostile
statements before anything runs.

Calls are serialized (one lock): measurements never compete with each other within one
Environment. Errors an HTTP client can cause are EnvError subclasses carrying a status code.
"""
from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from model.env import scoring
from model.env.contract import (
    NO_EPISODE,
    Action,
    EpisodeState,
    ExecutionReport,
    Observation,
    Reward,
    StepResult,
)
from model.env.leaderboard import Leaderboard
from model.env.tasks import DEMO_TASKS, DIALECT, Task, task_index
from sidecar.catalog import load_catalog
from sidecar.prompting.prompts import render_schema
from sidecar.verify import plans
from sidecar.verify.guard import GuardError, guard
from sidecar.verify.outcome import Outcome, OutcomeStatus
from sidecar.verify.session import PermissionRefused, ReadOnlySession, SessionError
from sidecar.verify.verifier import OriginalError, OriginalProfile, Verifier, VerifierConfig


class EnvError(Exception):
    """A request the environment cannot serve; `status` is the HTTP status that says why."""

    status = 400


class UnknownTask(EnvError):
    status = 400


class NoEpisode(EnvError):
    status = 409


class EpisodeDone(EnvError):
    status = 409


class TaskUnavailable(EnvError):
    """The task's own query cannot be run here (a missing table, no privilege): the server's tasks
    do not fit its database."""

    status = 500


class DatabaseDown(EnvError):
    status = 503


@dataclass(frozen=True)
class EnvConfig:
    """How the environment verifies and scores."""

    verifier: VerifierConfig = VerifierConfig()
    scoring: scoring.ScoreConfig = scoring.ScoreConfig()
    role: str | None = None
    """Verify as this role (SET ROLE, its privileges apply); None: the DSN's login role."""


@dataclass
class _Episode:
    task: Task
    session: ReadOnlySession
    verifier: Verifier
    profile: OriginalProfile
    schema_info: str
    episode_id: str
    step_count: int = 0
    done: bool = False
    cumulative_reward: float = 0.0
    issues: list[str] = field(default_factory=list)
    last_execution: dict[str, Any] | None = None


class Environment:
    """The seed environment's episodes, with the reward from our verifier."""

    def __init__(self, dsn: str, tasks: Sequence[Task] = DEMO_TASKS, config: EnvConfig = EnvConfig(),
                 leaderboard: Leaderboard | None = None) -> None:
        self.dsn = dsn
        self.tasks = task_index(tasks)
        self.config = config
        self.leaderboard = leaderboard if leaderboard is not None else Leaderboard()
        self._lock = threading.RLock()
        self._episode: _Episode | None = None
        self._schemas: dict[tuple[tuple[str | None, str], ...], str] = {}

    # -- tasks ------------------------------------------------------------------------------------

    def task(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            shown = ", ".join(list(self.tasks)[:10]) + (", ..." if len(self.tasks) > 10 else "")
            raise UnknownTask(f"unknown task_id {task_id!r}; the tasks are: {shown}")
        return task

    def task_list(self) -> list[dict[str, Any]]:
        """`GET /tasks`: every task with its schema_info (read from the live catalog once per set of tables)."""
        with self._lock, self._connect() as session:
            return [{**task.to_json(), "schema_info": self._schema_info(session, task)} for task in self.tasks.values()]

    def check_tasks(self) -> list[str]:
        """Why each task whose query PostgreSQL cannot plan here fails (EXPLAIN only; nothing runs).
        Empty when every task fits this database."""
        problems = []
        with self._lock, self._connect() as session:
            for task in self.tasks.values():
                try:
                    _, explained = session.explain(guard(task.sql_query).text)
                except SessionError as exc:
                    raise DatabaseDown(f"the database session failed: {exc}") from None
                if explained.error is not None:
                    problems.append(f"{task.task_id}: {explained.error.message}")
                elif explained.timed_out:
                    problems.append(f"{task.task_id}: EXPLAIN did not finish within the statement timeout")
        return problems

    # -- the episode ------------------------------------------------------------------------------

    def reset(self, task_id: str | None = None, episode_id: str | None = None) -> Observation:
        """Start an episode on `task_id` (None: the first task) in a new database session.

        The previous episode ends only once the new one is ready: an unknown task or a query that
        does not run leaves it as it was.
        """
        with self._lock:
            task = self.task(task_id) if task_id is not None else next(iter(self.tasks.values()))
            session = self._connect()
            try:
                verifier = Verifier(session, self.config.verifier)
                profile = self._prepare(verifier, task)
                schema_info = self._schema_info(session, task)
            except BaseException:
                session.close()
                raise
            if self._episode is not None:
                self._episode.session.close()
            self._episode = _Episode(task, session, verifier, profile, schema_info,
                                     episode_id or uuid.uuid4().hex)
            return self._observation(self._episode)

    def step(self, action: Action) -> StepResult:
        """Verify and score one submission; the episode ends after the task's max_steps."""
        with self._lock:
            episode = self._current()
            if episode.done:
                raise EpisodeDone(f"the episode on {episode.task.task_id} is over ({episode.step_count} of "
                                  f"{episode.task.max_steps} steps); POST /reset to start another")
            outcome = self._verify(episode.verifier, episode.profile, action.optimized_query)
            reward = scoring.reward(outcome, action, self.config.scoring)
            report = scoring.execution_report(outcome, episode.profile)
            episode.step_count += 1
            episode.cumulative_reward += reward.score
            episode.issues += [kind for kind in action.issue_types() if kind not in episode.issues]
            episode.last_execution = report.to_json()
            episode.done = episode.step_count >= episode.task.max_steps
            self._record(episode.task, outcome, reward, action.optimized_query)
            info = {"execution": report.to_json(), "outcome": outcome.to_json(), "step": episode.step_count,
                    "cumulative_reward": round(episode.cumulative_reward, 4), "episode_id": episode.episode_id}
            return StepResult(self._observation(episode), reward, episode.done, info)

    def grade(self, action: Action) -> tuple[Reward, ExecutionReport]:
        """Score an action against the current episode's task without advancing the episode."""
        with self._lock:
            episode = self._current()
            outcome = self._verify(episode.verifier, episode.profile, action.optimized_query)
            reward = scoring.reward(outcome, action, self.config.scoring)
            self._record(episode.task, outcome, reward, action.optimized_query)
            return reward, scoring.execution_report(outcome, episode.profile)

    def execute(self, task_id: str, optimized_query: str) -> ExecutionReport:
        """Verify a query against any task, in a session of its own (no episode needed or changed)."""
        with self._lock:
            task = self.task(task_id)
            with self._connect() as session:
                verifier = Verifier(session, self.config.verifier)
                profile = self._prepare(verifier, task)
                outcome = self._verify(verifier, profile, optimized_query)
            reward = scoring.reward(outcome, Action(optimized_query), self.config.scoring)
            self._record(task, outcome, reward, optimized_query)
            return scoring.execution_report(outcome, profile)

    def explain(self, sql: str) -> str:
        """The planner's plan for a statement, in the episode's session (nothing is executed): the
        plan as text, or why there is none. Refused statements are not planned either."""
        with self._lock:
            episode = self._current()
            try:
                statement = guard(sql)
            except GuardError as exc:
                return f"refused: {exc} (nothing was run)"
            try:
                plan, explained = episode.session.explain(statement.text)
            except SessionError as exc:
                raise DatabaseDown(f"the database session failed: {exc}") from None
            if explained.error is not None:
                return f"error: {explained.error.message}"
            if plan is None:
                return "error: EXPLAIN did not finish within the statement timeout"
            return f"estimated cost {plans.total_cost(plan):.1f}\n{plans.render(plan)}"

    def state(self) -> EpisodeState:
        with self._lock:
            episode = self._episode
            if episode is None:
                return NO_EPISODE
            return EpisodeState(task_id=episode.task.task_id, step_count=episode.step_count,
                                max_steps=episode.task.max_steps, episode_done=episode.done,
                                cumulative_reward=episode.cumulative_reward,
                                current_task=episode.task.task_name or episode.task.task_id,
                                episode_id=episode.episode_id)

    def observation(self) -> Observation:
        """The current episode's observation (NoEpisode before the first reset)."""
        with self._lock:
            return self._observation(self._current())

    def close(self) -> None:
        """End the episode and close its session."""
        with self._lock:
            if self._episode is not None:
                self._episode.session.close()
                self._episode = None

    def __enter__(self) -> Environment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------------

    def _current(self) -> _Episode:
        if self._episode is None:
            raise NoEpisode("no episode: POST /reset first")
        return self._episode

    def _connect(self) -> ReadOnlySession:
        try:
            return ReadOnlySession.connect(self.dsn, self.config.role,
                                           statement_timeout_ms=self.config.verifier.statement_timeout_ms)
        except PermissionRefused as exc:
            raise DatabaseDown(f"the environment's database role cannot be used: {exc}") from None
        except SessionError as exc:
            raise DatabaseDown(str(exc)) from None

    def _prepare(self, verifier: Verifier, task: Task) -> OriginalProfile:
        try:
            return verifier.prepare(task.sql_query)
        except (GuardError, OriginalError, PermissionRefused) as exc:
            raise TaskUnavailable(f"task {task.task_id}: its query cannot be run on this database: {exc}") from None
        except SessionError as exc:
            raise DatabaseDown(f"the database session failed: {exc}") from None

    def _verify(self, verifier: Verifier, profile: OriginalProfile, query: str) -> Outcome:
        if not query.strip():
            return Outcome(OutcomeStatus.EXTRACTION_FAIL, "no optimized_query: there is nothing to verify")
        try:
            return verifier.verify(profile, query)
        except SessionError as exc:
            raise DatabaseDown(f"the database session failed: {exc}") from None

    def _schema_info(self, session: ReadOnlySession, task: Task) -> str:
        tables = guard(task.sql_query).tables
        if tables not in self._schemas:
            try:
                catalog = load_catalog(session.connection, tables)
            except psycopg.Error as exc:
                raise DatabaseDown(f"cannot read the catalog: {exc}") from None
            self._schemas[tables] = render_schema(catalog)
        return self._schemas[tables]

    def _observation(self, episode: _Episode) -> Observation:
        task = episode.task
        return Observation(task_id=task.task_id, task_name=task.task_name or task.task_id,
                           task_description=task.task_description, sql_query=task.sql_query,
                           schema_info=episode.schema_info, dialect=DIALECT, difficulty=task.difficulty,
                           step_count=episode.step_count, max_steps=task.max_steps,
                           issues_found_so_far=list(episode.issues), last_execution=episode.last_execution)

    def _record(self, task: Task, outcome: Outcome, reward: Reward, query: str) -> None:
        self.leaderboard.record(task.task_id, task.task_name or task.task_id, outcome, reward.score, query,
                                scoring.verdict(outcome))
