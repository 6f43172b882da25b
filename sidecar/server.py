"""The sidecar's gRPC server (grpc.aio): laser.v1 Rewrite and Verify, standard health, graceful shutdown."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from laser_proto import laser_pb2, laser_pb2_grpc
from psycopg.conninfo import conninfo_to_dict

from sidecar import EXTENSION_VERSION, sdnotify
from sidecar.admission import Admission, QueueFull
from sidecar.answer import RewriteResult, evidence_json
from sidecar.auth import TokenCheck, TokenInterceptor
from sidecar.backends.errors import BackendError
from sidecar.cancellation import Cancellation
from sidecar.config import SidecarConfig, add_config_arguments, config_from_args, notify_socket
from sidecar.pipeline import RequestError, RequestOptions, RewritePipeline, WrongServer
from sidecar.verify import GuardError, OriginalError, Outcome
from sidecar.verify.session import DatabaseUnavailable, PermissionRefused

log = logging.getLogger("laser.sidecar")
SERVICE_NAME = "laser.v1.Laser"
T = TypeVar("T")


def _parameter_sets(sets: Any) -> tuple[tuple[tuple[int, str | None], ...], ...]:
    out = []
    for given in sets:
        numbers = [p.number for p in given.parameters]
        if any(n == 0 for n in numbers) or len(set(numbers)) != len(numbers):
            raise RequestError("a parameter set names each $n (n >= 1) at most once")
        out.append(tuple(sorted((p.number, None if p.is_null else p.value) for p in given.parameters)))
    return tuple(out)


def _options(message: laser_pb2.Options, context: grpc.aio.ServicerContext, target: laser_pb2.Target,
             sets: Any = ()) -> RequestOptions:
    if not target.server_id:
        raise RequestError("the request does not say which PostgreSQL server it is for (Target.server_id: the "
                           "system identifier of the caller's cluster); use a client of this release")
    remaining = context.time_remaining()
    return RequestOptions(
        server_id=target.server_id,
        server=target.server,
        parameter_sets=_parameter_sets(sets),
        min_parameter_sets=message.min_parameter_sets or None,
        deadline=None if remaining is None else time.monotonic() + remaining,
        max_candidates=message.max_candidates or None,
        statement_timeout_ms=message.statement_timeout_ms or None,
        timed_runs=message.timed_runs or None,
        dead_zone=message.dead_zone or None,
        no_cache=message.no_cache,
    )


def _outcome_message(outcome: Outcome, queue_wait_ms: float | None = None) -> laser_pb2.Outcome:
    evidence = outcome.to_json()
    if queue_wait_ms is not None:
        evidence["queue_wait_ms"] = round(queue_wait_ms, 3)
    return laser_pb2.Outcome(
        status=outcome.status.value,
        detail=outcome.detail,
        speedup=outcome.speedup,
        original_ms=outcome.original_ms,
        candidate_ms=outcome.candidate_ms,
        equivalent=outcome.equivalent,
        evidence_json=json.dumps(evidence, default=str),
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
        queue_wait_ms=result.queue_wait_ms,
    )


INTERRUPT_EVERY_S = 0.2
"""While a cancelled request's thread winds down, its running statement is interrupted this often."""


async def _finished(task: asyncio.Future[T], cancellation: Cancellation) -> T:
    """The task's result. When the caller is cancelled (its deadline passed, it hung up, its session
    was cancelled), the work's thread cannot be killed: cancel the request (no new step starts, the
    running statement is interrupted, again until the thread returns), wait for the thread before the
    slot it holds goes to the next request, then pass the cancellation on."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancellation.cancel()
        while not task.done():
            await asyncio.wait({task}, timeout=INTERRUPT_EVERY_S)
            cancellation.interrupt()
        with contextlib.suppress(BaseException):
            task.result()
        raise


class LaserService(laser_pb2_grpc.LaserServicer):
    """Runs the blocking pipeline in worker threads, a bounded number at a time, a bounded number
    waiting (the rest refused at once); a request whose caller goes away is dropped or stopped."""

    def __init__(self, pipeline: RewritePipeline, max_concurrent: int, max_queued: int = 32) -> None:
        self.pipeline = pipeline
        self.admission = Admission(max_concurrent, max_queued)

    async def _call(self, context: grpc.aio.ServicerContext, work: Callable[[RequestOptions], T],
                    options: RequestOptions) -> tuple[T, float]:
        """The work's result and how long it waited for a slot (ms); errors as gRPC status codes."""
        cancellation = Cancellation()
        options = dataclasses.replace(options, cancellation=cancellation)
        try:
            async with self.admission.slot() as admitted:
                if admitted.wait_ms >= 1.0:
                    log.info("waited %.0f ms for a slot behind %d request(s)", admitted.wait_ms, admitted.ahead)
                task = asyncio.ensure_future(asyncio.to_thread(work, options))
                return await _finished(task, cancellation), admitted.wait_ms
        except QueueFull as exc:
            log.warning("refused a request: %s", exc)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except WrongServer as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except (GuardError, OriginalError, RequestError) as exc:  # the request must change, by type only
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PermissionRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except DatabaseUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Exception as exc:
            log.exception("request failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable: context.abort raises")

    async def _checked(self, context: grpc.aio.ServicerContext, make: Callable[[], T]) -> T:
        try:
            return make()
        except (GuardError, RequestError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable: context.abort raises")

    async def Rewrite(  # noqa: N802 - the gRPC method's name
            self, request: laser_pb2.RewriteRequest, context: grpc.aio.ServicerContext) -> laser_pb2.RewriteResponse:
        options = await self._checked(
            context, lambda: _options(request.options, context, request.target, request.parameter_sets))
        target = request.target
        cached = await self._checked(context, lambda: self.pipeline.cached_answer(
            request.query, target.database, target.role, target.login_role, options))
        if cached is not None:  # answered without a slot: no queue for what is already known
            result = cached
        else:
            result, waited_ms = await self._call(context, lambda given: self.pipeline.rewrite(
                request.query, target.database, target.role, target.login_role, given), options)
            result = dataclasses.replace(result, queue_wait_ms=waited_ms)
        log.info("rewrite db=%s role=%s status=%s speedup=%.2f cached=%s", request.target.database,
                 request.target.role, result.status, result.speedup, result.cached)
        return _response(result)

    async def Verify(  # noqa: N802 - the gRPC method's name
            self, request: laser_pb2.VerifyRequest, context: grpc.aio.ServicerContext) -> laser_pb2.VerifyResponse:
        options = await self._checked(
            context, lambda: _options(request.options, context, request.target, request.parameter_sets))
        outcome, waited_ms = await self._call(context, lambda given: self.pipeline.verify(
            request.original, request.candidate, request.target.database, request.target.role,
            request.target.login_role, given), options)
        return laser_pb2.VerifyResponse(outcome=_outcome_message(outcome, waited_ms), queue_wait_ms=waited_ms)

    async def ModelInfo(  # noqa: N802 - the gRPC method's name
            self, request: laser_pb2.ModelInfoRequest,
            context: grpc.aio.ServicerContext) -> laser_pb2.ModelInfoResponse:
        pipeline = self.pipeline
        info = pipeline.backend.info()
        config = pipeline.config
        return laser_pb2.ModelInfoResponse(
            backend=info.backend, model=info.model, version=info.version, device=info.device,
            rules_alongside=pipeline.uses_model and pipeline.rules is not None,
            repair_rounds=config.repair_rounds if pipeline.uses_model else 0,
            demonstrations=config.demonstrations if pipeline.uses_model and pipeline.demonstrations else 0,
            details_json=json.dumps(info.details, default=str),
            extension_version=EXTENSION_VERSION,
            act_as=config.act_as,
            sidecar_role=str(conninfo_to_dict(config.dsn).get("user") or ""),
        )


@contextlib.asynccontextmanager
async def serving(config: SidecarConfig) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    """Start the server; on exit: health NOT_SERVING, then stop(grace), then release the pipeline."""
    pipeline = RewritePipeline.from_config(config)
    token = config.token or config.token_file
    interceptors = [TokenInterceptor(TokenCheck(config.token, config.token_file))] if token else []
    server = grpc.aio.server(interceptors=interceptors)
    laser_pb2_grpc.add_LaserServicer_to_server(LaserService(pipeline, config.max_concurrent, config.max_queued),
                                               server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(config.listen)
    if port == 0 and not config.listen.startswith("unix:"):
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("laser sidecar serving on %s (backend=%s%s; %d at a time, %d may wait%s)", config.listen,
             config.backend, f", model {config.model_dir}" if config.model_dir else "", config.max_concurrent,
             config.max_queued, "; every call needs the token" if token else "")
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
        sdnotify.notify("READY=1", notify_socket())  # health says SERVING by now
        await stop.wait()
        log.info("stopping: in-flight requests have %.0f s to finish", config.grace_s)
        sdnotify.notify("STOPPING=1", notify_socket())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every SidecarConfig field as a flag, a TOML file of them, and the log level."""
    add_config_arguments(parser)
    parser.add_argument("--config", metavar="FILE.toml",
                        help="a TOML file of these settings, by field name (listen = \"127.0.0.1:50551\", "
                             "act_as = \"set_role\", ...); flags and LASER_SIDECAR_* variables override it")
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> int:
    """Serve until SIGINT/SIGTERM with the configuration the flags, the environment and `defaults`
    (e.g. the local cluster's addresses) give, in that order of precedence."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = config_from_args(args, defaults)
    except ValueError as exc:
        print(f"laser-sidecar: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except BackendError as exc:
        print(f"laser-sidecar: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="laser-sidecar", description="Serve the LASER rewrite service over gRPC.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
