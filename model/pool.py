"""Parallel verification: a pool of worker processes, each with its own read-only database session.

Training scores many candidates per step (a GRPO group per query); the pool verifies them side by
side. Each worker is a separate process with its own connection, so a worker that fails or is
cancelled by a timeout affects only its own job; every statement is bounded by the session's
statement_timeout. Workers keep the profiles of recently seen originals, so a group of candidates
for one query pays for the original's warm-up once per worker.

Latencies measured while workers run side by side share the machine: use them for rewards and
throughput, and a single worker (or the sidecar) for speedups you report.
"""
from __future__ import annotations

import contextlib
import multiprocessing
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.verify.evidence import Evidence
from sidecar.verify.guard import GuardError
from sidecar.verify.outcome import Outcome, OutcomeStatus
from sidecar.verify.session import ReadOnlySession, SessionError
from sidecar.verify.verifier import OriginalError, OriginalProfile, Verifier, VerifierConfig

PROFILES_KEPT = 32


@dataclass(frozen=True)
class Job:
    """One candidate to verify against one original (with values for `$n`, if it has any)."""

    original: str
    candidate: str
    values: tuple[tuple[int, str | None], ...] = ()
    config: VerifierConfig | None = None
    """How hard to look for this job; None: the pool's configuration."""


class Verifies(Protocol):
    """What the corpus and the trainer need of a pool: ``VerifierPool`` (worker processes),
    ``InlineVerifier`` (this process) or ``RayVerifierPool`` (Ray actors, replicas)."""

    def verify_many(self, jobs: Iterable[Job]) -> list[Outcome]: ...

    def close(self) -> None: ...


class VerifierPool:
    """`workers` processes verifying jobs in parallel; results come back in the order of the jobs.

    >>> VerifierPool("dbname=x", workers=0)
    Traceback (most recent call last):
    ...
    ValueError: workers must be between 1 and 64
    """

    def __init__(self, dsn: str, role: str | None = None, workers: int = 2,
                 config: VerifierConfig = VerifierConfig()) -> None:
        if not 1 <= workers <= 64:
            raise ValueError("workers must be between 1 and 64")
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(dsn, role, config),
        )

    def verify_many(self, jobs: Iterable[Job]) -> list[Outcome]:
        """Verify every job; a job that cannot be verified comes back as an outcome, never raises."""
        batch = list(jobs)
        chunk = max(1, len(batch) // (self.workers * 4))
        return list(self._executor.map(_verify_job, batch, chunksize=chunk))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineVerifier:
    """The pool's interface verifying in this process, one job after another: for a process that
    is itself one of many workers (a Ray actor of `laser corpus --engine ray`), where a pool of
    its own would only add processes."""

    def __init__(self, dsn: str, role: str | None = None, config: VerifierConfig = VerifierConfig()) -> None:
        self._worker = _Worker(dsn, role, config)
        self.workers = 1

    def verify_many(self, jobs: Iterable[Job]) -> list[Outcome]:
        return [self._worker.verify(job) for job in jobs]

    def close(self) -> None:
        self._worker.session.close()

    def __enter__(self) -> InlineVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayVerifierPool:
    """The pool's interface on Ray: ``workers`` actors per database (``dsns``: the primary and its
    replicas, same schema and data), each an ``InlineVerifier`` in its own process, on this machine
    or across a Ray cluster (``address``: "auto" or host:port; without it a local Ray instance is
    started and stopped with the pool). A batch is cut into one contiguous slice per actor, so
    the candidates of one original mostly meet the same actor and its cached profile.

    Ray is used as ``laser corpus --engine ray`` uses it; what is ours is only the slicing."""

    def __init__(self, dsns: list[str], role: str | None = None, workers: int = 1,
                 config: VerifierConfig = VerifierConfig(), address: str | None = None) -> None:
        if not dsns or not 1 <= workers <= 64:
            raise ValueError("need at least one database, and workers between 1 and 64")
        try:
            import ray
        except ImportError:
            raise ValueError("Ray is not installed: pip install 'laser-pg[ray]'") from None
        self._ray: Any = ray
        self._started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=len(dsns) * workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
            self._started = True
        actor: Any = ray.remote(num_cpus=1, max_restarts=0)(InlineVerifier)
        self.actors: list[Any] = [actor.remote(dsn, role, config) for dsn in dsns for _ in range(workers)]
        self.workers = len(self.actors)
        try:
            ray.get([a.__ray_ready__.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            self.close()
            raise SessionError(f"a Ray verifier could not start: {exc}") from None

    def verify_many(self, jobs: Iterable[Job]) -> list[Outcome]:
        batch = list(jobs)
        if not batch:
            return []
        size = -(-len(batch) // len(self.actors))
        slices = [batch[i:i + size] for i in range(0, len(batch), size)]
        results = self._ray.get([a.verify_many.remote(part) for a, part in zip(self.actors, slices, strict=False)])
        return [outcome for part in results for outcome in part]

    def close(self) -> None:
        for worker in self.actors:
            with contextlib.suppress(self._ray.exceptions.RayError):
                self._ray.get(worker.close.remote(), timeout=30)
        self.actors = []
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> RayVerifierPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Worker:
    """One session and verifier, with the profiles of recently seen originals."""

    def __init__(self, dsn: str, role: str | None, config: VerifierConfig) -> None:
        self.session = ReadOnlySession.connect(dsn, role, statement_timeout_ms=config.statement_timeout_ms)
        self.verifier = Verifier(self.session, config)
        self.profiles: OrderedDict[tuple[str, tuple[tuple[int, str | None], ...], VerifierConfig | None],
                                   OriginalProfile | Outcome] = OrderedDict()

    def verify(self, job: Job) -> Outcome:
        verifier = self.verifier if job.config is None else Verifier(self.session, job.config)
        key = (job.original, job.values, job.config)
        profile = self.profiles.get(key)
        if profile is None:
            profile = _prepare(verifier, job)
            self.profiles[key] = profile
            while len(self.profiles) > PROFILES_KEPT:
                self.profiles.popitem(last=False)
        else:
            self.profiles.move_to_end(key)
        if isinstance(profile, Outcome):
            return profile
        try:
            return verifier.verify(profile, job.candidate)
        except SessionError as exc:
            return Outcome(OutcomeStatus.UNVERIFIABLE, f"the database session failed: {exc}")


# -- inside a worker process --------------------------------------------------------------------

_worker: _Worker | None = None


def _start_worker(dsn: str, role: str | None, config: VerifierConfig) -> None:
    global _worker
    _worker = _Worker(dsn, role, config)


def _verify_job(job: Job) -> Outcome:
    assert _worker is not None, "worker not started"
    return _worker.verify(job)


def _prepare(verifier: Verifier, job: Job) -> OriginalProfile | Outcome:
    """The original's profile, or the outcome every candidate of a broken original gets."""
    values: dict[int, str | None] | None = dict(job.values) if job.values else None
    try:
        return verifier.prepare(job.original, values)
    except GuardError as exc:
        return Outcome(OutcomeStatus.UNVERIFIABLE, f"the original is refused: {exc}")
    except OriginalError as exc:
        return Outcome(OutcomeStatus.UNVERIFIABLE, f"the original does not run: {exc}",
                       evidence=Evidence(sqlstate=exc.sqlstate))
    except SessionError as exc:
        return Outcome(OutcomeStatus.UNVERIFIABLE, f"the database session failed: {exc}")


def outcome_counts(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """How many outcomes of each status (for progress lines and reports).

    >>> outcome_counts([Outcome(OutcomeStatus.FASTER), Outcome(OutcomeStatus.FASTER), Outcome(OutcomeStatus.SLOWER)])
    {'faster': 2, 'slower': 1}
    """
    counts: dict[str, Any] = {}
    for outcome in outcomes:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    return counts
