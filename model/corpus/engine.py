"""Where the seeds grow: in this process (the local engine: one seed at a time, its variants
verified by a pool of worker processes) or on a Ray cluster (``--engine ray``: seeds in parallel,
each Ray actor growing whole seeds against its own database, the primary or a replica).

Both yield one ``SeedResult`` per seed in the order the seeds were given, so the corpus file, the
resume log and the progress lines do not depend on the engine or on which worker finished first.
Ray is used for what it does (placing actors on a cluster's nodes, moving results back); the
scheduling here is only "give an idle actor the next seed".
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Protocol

import psycopg

from model.corpus.grower import CorpusConfig, CorpusError, SeedGrower, SeedQuery, SeedResult
from sidecar.verify import SessionError

Decision = Literal["go", "wait", "stop"]
"""The driver's answer before each seed is started, given how many seeds are in flight: start it,
wait for a running seed to finish first, or start no more."""

Want = Callable[[SeedQuery, int], Decision]


class Engine(Protocol):
    def run(self, seeds: Iterable[SeedQuery], want: Want, written: set[str]) -> Iterator[SeedResult]: ...

    def close(self) -> None: ...


def describe(dsn: str) -> str:
    """A DSN without its secrets, to name a database in messages and results.

    >>> describe("host=db2 port=5433 dbname=shop user=me password=secret")
    'db2:5433/shop'
    """
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable DSN)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class LocalEngine:
    """One seed after another in this process; each seed's variants go to ``config.workers``
    verifier processes at once."""

    def __init__(self, dsn: str, config: CorpusConfig, schema_id: str, database: str) -> None:
        self.grower = SeedGrower(dsn, config, schema_id, database, workers=config.workers)

    def run(self, seeds: Iterable[SeedQuery], want: Want, written: set[str]) -> Iterator[SeedResult]:
        for seed in seeds:
            if want(seed, 0) != "go":
                return
            yield self.grower.grow(seed, written)

    def close(self) -> None:
        self.grower.close()


class _Actor:
    """A Ray actor: a grower verifying in its own process against one database."""

    def __init__(self, dsn: str, config: CorpusConfig, schema_id: str, database: str) -> None:
        from model.corpus.build import schema_manifest

        self.grower = SeedGrower(dsn, config, schema_id, database, workers=1, inline=True, name=describe(dsn))
        mine = schema_manifest(self.grower.session.connection)["schema_id"]
        if mine != schema_id:
            self.grower.close()
            raise CorpusError(f"{describe(dsn)} has another schema ({mine}) than the primary database "
                              f"({schema_id}): a replica must hold the same tables, keys and data")

    def grow(self, seed: SeedQuery, written: set[str]) -> SeedResult:
        return self.grower.grow(seed, written)

    def close(self) -> None:
        self.grower.close()


class RayEngine:
    """``config.workers`` Ray actors per database (the primary and each replica); each grows a
    whole seed at a time, verifying in its own process. ``address``: a running Ray cluster
    ("auto" or host:port); without it a local Ray instance is started for the run and stopped
    after."""

    def __init__(self, dsns: list[str], config: CorpusConfig, schema_id: str, database: str,
                 address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise CorpusError("--engine ray needs Ray: pip install 'laser-pg[ray]'") from None
        self._ray: Any = ray
        self._started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=len(dsns) * config.workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
            self._started = True
        actor: Any = ray.remote(num_cpus=1, max_restarts=0)(_Actor)
        self.actors: list[Any] = [actor.remote(dsn, config, schema_id, database)
                                  for dsn in dsns for _ in range(config.workers)]
        try:
            ray.get([a.__ray_ready__.remote() for a in self.actors])
        except ray.exceptions.RayError as exc:
            self.close()
            raise CorpusError(f"a Ray worker could not start: {_cause(exc)}") from None

    def run(self, seeds: Iterable[SeedQuery], want: Want, written: set[str]) -> Iterator[SeedResult]:
        ray = self._ray
        pending = iter(enumerate(seeds))
        waiting: tuple[int, SeedQuery] | None = None
        running: dict[Any, tuple[int, Any]] = {}  # Ray object ref -> (seed index, actor)
        finished: dict[int, SeedResult] = {}
        idle = list(self.actors)
        next_out = 0
        stopped = False
        while True:
            while idle and not stopped:
                item = waiting or next(pending, None)
                waiting = None
                if item is None:
                    stopped = True
                    break
                decision = want(item[1], len(running) + len(finished))  # finished: not yet yielded
                if decision == "stop" or (decision == "wait" and not running):
                    stopped = True
                    break
                if decision == "wait":
                    waiting = item
                    break
                worker = idle.pop(0)
                running[worker.grow.remote(item[1], set(written))] = (item[0], worker)
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                index, worker = running.pop(ref)
                try:
                    finished[index] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise CorpusError(f"a Ray worker failed: {_cause(exc)}") from None
                idle.append(worker)
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
        while next_out in finished:
            yield finished.pop(next_out)
            next_out += 1

    def close(self) -> None:
        ray = self._ray
        for worker in self.actors:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(worker.close.remote(), timeout=30)
        self.actors = []
        if self._started:
            ray.shutdown()


def _cause(exc: BaseException) -> str:
    """The message of the error raised inside a Ray task, without Ray's traceback framing."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CorpusError | SessionError):
        return str(cause)
    return str(cause or exc).strip().splitlines()[-1]
