"""The sidecar's gRPC server (grpc.aio): laser.v1 Rewrite and Verify, standard health, graceful shutdown."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from laser_proto import laser_pb2, laser_pb2_grpc
from sidecar.backends.rules import RulesBackend
from sidecar.config import SidecarConfig
from sidecar.pipeline import RequestOptions, RewritePipeline, RewriteResult, evidence_json
from sidecar.verify import GuardError, Outcome, OriginalError
from sidecar.verify.session import DatabaseUnavailable, PermissionRefused

log = logging.getLogger("laser.sidecar")
SERVICE_NAME = "laser.v1.Laser"
T = TypeVar("T")


def _parameter_sets(sets: Any) -> tuple[tuple[tuple[int, str | None], ...], ...]:
    out = []
    for given in sets:
        numbers = [p.number for p in given.parameters]
        if any(n == 0 for n in numbers) or len(set(numbers)) != len(numbers):
            raise ValueError("a parameter set names each $n (n >= 1) at most once")
        out.append(tuple(sorted((p.number, None if p.is_null else p.value) for p in given.parameters)))
    return tuple(out)


def _options(message: laser_pb2.Options, context: grpc.aio.ServicerContext,
             sets: Any = ()) -> RequestOptions:
    remaining = context.time_remaining()
    return RequestOptions(
        parameter_sets=_parameter_sets(sets),
        min_parameter_sets=message.min_parameter_sets or None,
        deadline=None if remaining is None else time.monotonic() + remaining,
        max_candidates=message.max_candidates or None,
        statement_timeout_ms=message.statement_timeout_ms or None,
        timed_runs=message.timed_runs or None,
        dead_zone=message.dead_zone or None,
        no_cache=message.no_cache,
    )


def _outcome_message(outcome: Outcome) -> laser_pb2.Outcome:
    return laser_pb2.Outcome(
        status=outcome.status.value,
        detail=outcome.detail,
        speedup=outcome.speedup,
        original_ms=outcome.original_ms,
        candidate_ms=outcome.candidate_ms,
        equivalent=outcome.equivalent,
        evidence_json=json.dumps(outcome.to_json(), default=str),
    )


def _response(result: RewriteResult) -> laser_pb2.RewriteResponse:
    return laser_pb2.RewriteResponse(
        status=result.status,
        original_sql=result.original_sql,
        rewritten_sql=result.rewritten_sql,
        message=result.message,
        speedup=result.speedup,
        original_ms=result.original_ms,
        rewrite_ms=result.rewrite_ms,
        source=result.source,
        candidates=[
            laser_pb2.Candidate(sql=a.sql, source=a.source, outcome=_outcome_message(a.outcome))
            for a in result.attempts
        ],
        backend=result.backend,
        generation_ms=result.generation_ms,
        verification_ms=result.verification_ms,
        cached=result.cached,
        measured_at=result.measured_at,
        evidence_json=evidence_json(result),
    )


class LaserService(laser_pb2_grpc.LaserServicer):
    """Runs the blocking pipeline in worker threads, a bounded number at a time."""

    def __init__(self, pipeline: RewritePipeline, max_concurrent: int) -> None:
        self.pipeline = pipeline
        self._slots = asyncio.Semaphore(max_concurrent)

    async def _call(self, context: grpc.aio.ServicerContext, work: Callable[[], T]) -> T:
        try:
            async with self._slots:
                return await asyncio.to_thread(work)
        except (GuardError, OriginalError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PermissionRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except DatabaseUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets a status, the log gets the trace
            log.exception("request failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable: context.abort raises")

    async def _checked(self, context: grpc.aio.ServicerContext, make: Callable[[], T]) -> T:
        try:
            return make()
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable: context.abort raises")

    async def Rewrite(self, request: laser_pb2.RewriteRequest, context: grpc.aio.ServicerContext) -> laser_pb2.RewriteResponse:  # noqa: N802
        options = await self._checked(context, lambda: _options(request.options, context, request.parameter_sets))
        result = await self._call(context, lambda: self.pipeline.rewrite(
            request.query, request.target.database, request.target.role, request.target.login_role, options))
        log.info("rewrite db=%s role=%s status=%s speedup=%.2f cached=%s", request.target.database,
                 request.target.role, result.status, result.speedup, result.cached)
        return _response(result)

    async def Verify(self, request: laser_pb2.VerifyRequest, context: grpc.aio.ServicerContext) -> laser_pb2.VerifyResponse:  # noqa: N802
        options = await self._checked(context, lambda: _options(request.options, context, request.parameter_sets))
        outcome = await self._call(context, lambda: self.pipeline.verify(
            request.original, request.candidate, request.target.database, request.target.role,
            request.target.login_role, options))
        return laser_pb2.VerifyResponse(outcome=_outcome_message(outcome))


def build_backend(config: SidecarConfig) -> Any:
    if config.backend == "rules":
        return RulesBackend()
    raise ValueError(f"unknown backend {config.backend!r}")


@contextlib.asynccontextmanager
async def serving(config: SidecarConfig) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    """Start the server; on exit: health NOT_SERVING, then stop(grace), then release the pipeline."""
    pipeline = RewritePipeline(config, build_backend(config))
    server = grpc.aio.server()
    laser_pb2_grpc.add_LaserServicer_to_server(LaserService(pipeline, config.max_concurrent), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(config.listen)
    if port == 0 and not config.listen.startswith("unix:"):
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("laser sidecar serving on %s (backend=%s)", config.listen, config.backend)
    try:
        yield server, port
    finally:
        await health_servicer.enter_graceful_shutdown()
        await server.stop(config.grace_s)
        log.info("laser sidecar stopped")


async def serve(config: SidecarConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serving(config):
        await stop.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", help="gRPC address (default 127.0.0.1:50551)")
    parser.add_argument("--dsn", help="libpq conninfo of the sidecar's read-only role, without dbname")
    parser.add_argument("--backend", choices=["rules"], help="candidate generator (default rules)")
    parser.add_argument("--act-as", choices=["login", "set_role"],
                        help="take the caller's identity by logging in as it (default) or by SET ROLE")
    parser.add_argument("--max-candidates", type=int)
    parser.add_argument("--statement-timeout-ms", type=int)
    parser.add_argument("--timed-runs", type=int)
    parser.add_argument("--log-level", default="INFO")


def config_from_args(args: argparse.Namespace) -> SidecarConfig:
    return SidecarConfig.from_env(
        listen=args.listen, dsn=args.dsn, backend=args.backend, act_as=args.act_as, max_candidates=args.max_candidates,
        statement_timeout_ms=args.statement_timeout_ms, timed_runs=args.timed_runs,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"laser-sidecar: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="laser-sidecar", description="Serve the LASER rewrite service over gRPC.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
