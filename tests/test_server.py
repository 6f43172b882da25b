"""The sidecar as a gRPC server: health, status codes for bad requests, graceful shutdown."""
from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from laser_proto import laser_pb2, laser_pb2_grpc
from sidecars import running_sidecar, server_id

from laser import daemon, demo
from sidecar.config import SidecarConfig
from sidecar.pipeline import RequestError
from sidecar.server import LaserService
from sidecar.verify import GuardError


def _stub(address: str) -> laser_pb2_grpc.LaserStub:
    return laser_pb2_grpc.LaserStub(grpc.insecure_channel(address))


def test_health_reports_serving(sidecar: str) -> None:
    with grpc.insecure_channel(sidecar) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "laser.v1.Laser"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("query", "database", "role", "code", "text"), [
    ("DELETE FROM users", "laser_demo", "shop", grpc.StatusCode.INVALID_ARGUMENT, "got DELETE"),
    ("SELECT 1", "", "shop", grpc.StatusCode.INVALID_ARGUMENT, "names no database"),
    ("SELECT 1", "no_such_database", "shop", grpc.StatusCode.UNAVAILABLE, "no_such_database"),
    ("SELECT 1", "laser_demo", "no_such_role", grpc.StatusCode.PERMISSION_DENIED, "does not exist"),
    ("SELECT * FROM no_such_table", "laser_demo", "shop", grpc.StatusCode.INVALID_ARGUMENT, "does not run"),
])
def test_errors_are_grpc_status_codes(sidecar: str, cluster_id: str, query: str, database: str, role: str,
                                      code: grpc.StatusCode, text: str) -> None:
    request = laser_pb2.RewriteRequest(query=query, target=laser_pb2.Target(database=database, role=role,
                                                                            server_id=cluster_id))
    with pytest.raises(grpc.RpcError) as failed:
        _stub(sidecar).Rewrite(request, timeout=30)
    assert failed.value.code() == code
    assert text in (failed.value.details() or "")


def test_rewrite_rpc_returns_evidence(sidecar: str, cluster_id: str) -> None:
    request = laser_pb2.RewriteRequest(
        query="SELECT id FROM users WHERE id = 42",
        target=laser_pb2.Target(database="laser_demo", role="shop", server_id=cluster_id),
    )
    reply = _stub(sidecar).Rewrite(request, timeout=60)
    assert reply.status == "no_verified_improvement"
    assert reply.rewritten_sql == reply.original_sql == request.query
    assert reply.backend == "rules"
    assert reply.message


def test_graceful_shutdown_on_sigterm(cluster) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.server", "--listen", address, "--dsn", cluster.sidecar_dsn()],
        cwd=str(Path(__file__).resolve().parent.parent), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        daemon.wait_serving(address, timeout_s=60, process=process)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert time.monotonic() - started < SidecarConfig().grace_s + 5
        output = process.stdout.read().decode() if process.stdout else ""
        assert "laser sidecar stopped" in output
        assert daemon.health_status(address) == "UNREACHABLE"
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dsn": "host=/tmp dbname=x"}, "must not name a database"),
    ({"backend": "gpt"}, "unknown backend"),
    ({"timed_runs": 0}, "timed_runs must be positive"),
    ({"dead_zone": 1.5}, "dead_zone"),
    ({"listen": ""}, "listen must be an address"),
    ({"backend": "transformers"}, "needs a model directory"),
    ({"backend": "vllm", "model_dir": "/m", "repair_rounds": -1}, "repair_rounds must not be negative"),
    ({"temperature": -0.5}, "temperature"),
    ({"max_new_tokens": 0}, "max_new_tokens must be positive"),
    ({"search_budget_s": -1}, "search_budget_s must not be negative"),
])
def test_config_is_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SidecarConfig(**overrides)


def test_search_budget_from_the_command_line_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from sidecar.config import config_from_args
    from sidecar.server import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([])).search_budget_s == SidecarConfig().search_budget_s
    assert config_from_args(parser.parse_args(["--search-budget-s", "0.5"])).search_budget_s == 0.5
    monkeypatch.setenv("LASER_SIDECAR_SEARCH_BUDGET_S", "2.5")
    assert config_from_args(parser.parse_args([])).search_budget_s == 2.5


def test_boolean_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LASER_SIDECAR_WITH_RULES", "false")
    monkeypatch.setenv("LASER_SIDECAR_COUNTEREXAMPLE_FEEDBACK", "on")
    config = SidecarConfig.from_env()
    assert config.with_rules is False and config.counterexample_feedback is True
    monkeypatch.setenv("LASER_SIDECAR_WITH_RULES", "maybe")
    with pytest.raises(ValueError, match="is not a boolean"):
        SidecarConfig.from_env()


def test_a_model_that_cannot_load_stops_the_sidecar_with_a_clear_error(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "sidecar.server", "--listen", "127.0.0.1:0", "--backend",
                           "transformers", "--model-dir", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"model directory {tmp_path / 'nowhere'} does not exist" in done.stderr


def _request(query: str, cluster: Any, no_cache: bool = True) -> laser_pb2.RewriteRequest:
    target = laser_pb2.Target(database="laser_demo", role="shop", server_id=server_id(cluster))
    return laser_pb2.RewriteRequest(query=query, target=target, options=laser_pb2.Options(no_cache=no_cache))


def _verifier_sessions(admin_dsn: str) -> int:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'laser-verifier'"
                           " AND backend_type = 'client backend'"
                           " AND state <> 'idle'").fetchone()
    return int(row[0]) if row else 0


def test_a_passed_deadline_stops_the_verification_and_frees_the_slot(cluster: Any, admin_dsn: str) -> None:
    """The client's deadline reaches the pipeline: statements are cut at it, no candidate is verified
    after it, and the single slot is free again at once (the whole verification takes ~15 s)."""
    slow = (demo.DEMO_DIR / "queries" / "02_correlated_aggregates_per_user.sql").read_text()
    with running_sidecar(cluster, "--max-concurrent", "1") as address:
        stub = _stub(address)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            stub.Rewrite(_request(slow, cluster), timeout=1.0)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        deadline = time.monotonic() + 5
        while _verifier_sessions(admin_dsn) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _verifier_sessions(admin_dsn) == 0, "a statement outlived the caller's deadline by 4 s"
        quick = stub.Rewrite(_request("SELECT id FROM users WHERE id = 42", cluster), timeout=60)
        assert quick.status == "no_verified_improvement"
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("limit", [1, 2])
def test_no_more_verifications_at_once_than_the_limit(cluster: Any, admin_dsn: str, limit: int) -> None:
    """Three requests at once: exactly `limit` verifier sessions work side by side, the rest wait."""
    queries = [(demo.DEMO_DIR / "queries" / name).read_text() for name in
               ("01_nonsargable_date_filter.sql", "03_distinct_join_wide_rows.sql", "06_repeated_category_totals.sql")]
    with running_sidecar(cluster, "--max-concurrent", str(limit)) as address:
        stub = _stub(address)
        with concurrent.futures.ThreadPoolExecutor(len(queries)) as pool:
            replies = [pool.submit(stub.Rewrite, _request(q, cluster), timeout=300) for q in queries]
            most = 0
            while not all(r.done() for r in replies):
                most = max(most, _verifier_sessions(admin_dsn))
                time.sleep(0.02)
            assert [r.result().status for r in replies] == ["improved"] * len(queries)
    assert most == limit


def test_cached_answers_expire_after_the_ttl(cluster: Any) -> None:
    query = "SELECT id FROM users WHERE id = 7"
    with running_sidecar(cluster, "--cache-ttl-s", "1.5") as address:
        stub = _stub(address)
        first = stub.Rewrite(_request(query, cluster, no_cache=False), timeout=60)
        second = stub.Rewrite(_request(query, cluster, no_cache=False), timeout=60)
        time.sleep(1.6)
        third = stub.Rewrite(_request(query, cluster, no_cache=False), timeout=60)
    assert (first.cached, second.cached, third.cached) == (False, True, False)


class _Raising:
    """A pipeline stand-in whose rewrite raises the given exception: only the server's mapping of
    exception types to status codes is under test here (the real pipeline's errors are tested above)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def cached_answer(self, *args: Any) -> None:
        return None

    def rewrite(self, *args: Any) -> Any:
        raise self.exc


@pytest.mark.parametrize(("exc", "code", "text"), [
    (ValueError("an invariant broke"), grpc.StatusCode.INTERNAL, "internal error: ValueError: an invariant broke"),
    (KeyError("plan"), grpc.StatusCode.INTERNAL, "internal error: KeyError"),
    (RequestError("names no role"), grpc.StatusCode.INVALID_ARGUMENT, "names no role"),
    (GuardError("got DELETE"), grpc.StatusCode.INVALID_ARGUMENT, "got DELETE"),
])
def test_errors_map_by_type_and_internal_errors_are_not_the_callers_fault(
        exc: Exception, code: grpc.StatusCode, text: str) -> None:
    async def call() -> grpc.RpcError:
        server = grpc.aio.server()
        laser_pb2_grpc.add_LaserServicer_to_server(LaserService(_Raising(exc), 1), server)  # type: ignore[arg-type]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = laser_pb2.RewriteRequest(query="SELECT 1", target=laser_pb2.Target(database="d", role="r",
                                                                                                server_id="1"))
                try:
                    await laser_pb2_grpc.LaserStub(channel).Rewrite(request, timeout=10)
                except grpc.RpcError as failed:
                    return failed
                raise AssertionError("the call succeeded")
        finally:
            await server.stop(0)

    failed = asyncio.run(call())
    assert failed.code() == code
    assert text in (failed.details() or "")
