"""`GET /leaderboard`: per task, the best score and the fastest verified-equivalent rewrite so far.

In memory, for the life of the server; every candidate the verifier judged counts as an attempt
(`/step`, `/grader` and `/execute` alike). Thread-safe.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.verify.outcome import Outcome, OutcomeStatus


@dataclass
class _Standing:
    task_name: str
    attempts: int = 0
    correct: int = 0
    refused: int = 0
    best_score: float = 0.0
    best_score_at: str | None = None
    best_speedup: float = 0.0
    best_query: str | None = None
    best_verdict: str | None = None


class Leaderboard:
    """Best results per task, in the order tasks were first attempted.

    >>> board = Leaderboard()
    >>> board.record("t", "T", Outcome(OutcomeStatus.FASTER, speedup=4.0), 0.95, "SELECT 2", "faster")
    >>> board.record("t", "T", Outcome(OutcomeStatus.GUARD_REFUSED), 0.0, "DELETE FROM x", "refused")
    >>> row = board.to_json()["t"]
    >>> row["best_speedup"], row["best_query"], row["total_attempts"], row["refused_attempts"], row["success_rate"]
    (4.0, 'SELECT 2', 2, 1, 0.5)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._standings: dict[str, _Standing] = {}

    def record(self, task_id: str, task_name: str, outcome: Outcome, score: float, query: str, verdict: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock:
            standing = self._standings.setdefault(task_id, _Standing(task_name))
            standing.attempts += 1
            standing.correct += int(outcome.equivalent)
            standing.refused += int(outcome.status is OutcomeStatus.GUARD_REFUSED)
            if standing.best_score_at is None or score > standing.best_score:
                standing.best_score, standing.best_score_at = score, now
            if outcome.status.timed and outcome.equivalent and outcome.speedup > standing.best_speedup:
                standing.best_speedup, standing.best_query, standing.best_verdict = outcome.speedup, query, verdict

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {task_id: {"task_name": s.task_name, "best_score": round(s.best_score, 4),
                              "best_speedup": round(s.best_speedup, 4), "best_query": s.best_query,
                              "best_verdict": s.best_verdict, "total_attempts": s.attempts,
                              "correct_attempts": s.correct, "refused_attempts": s.refused,
                              "success_rate": round(s.correct / s.attempts, 3), "best_attempt_at": s.best_score_at}
                    for task_id, s in self._standings.items()}
