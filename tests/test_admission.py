"""Load and back-pressure: a bounded queue in front of the verification slots, a fast retryable refusal
beyond it, queue waits in the evidence, and a caller that goes away (gRPC cancel, statement_timeout,
pg_cancel_backend) dropped from the queue or its verification stopped. Real cluster, real sidecar."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from typing import Any

import grpc
import psycopg
import pytest
from laser_proto import laser_pb2, laser_pb2_grpc
from sidecars import running_sidecar

from laser import demo
from sidecar.admission import Admission, QueueFull

SLOW = (demo.DEMO_DIR / "queries" / "02_correlated_aggregates_per_user.sql").read_text()
QUICK = "SELECT id FROM users WHERE id = 42"


def test_the_queue_is_bounded_first_come_first_served_and_a_caller_that_leaves_is_dropped() -> None:
    async def scenario() -> list[str]:
        admission = Admission(slots=1, max_queued=2)
        order: list[str] = []
        release = asyncio.Event()

        async def request(name: str) -> None:
            async with admission.slot() as admitted:
                order.append(f"{name}:{admitted.ahead}")
                await release.wait()

        first = asyncio.create_task(request("a"))
        await asyncio.sleep(0)
        leaving = asyncio.create_task(request("b"))
        waiting = asyncio.create_task(request("c"))
        await asyncio.sleep(0)
        assert (admission.running, admission.waiting) == (1, 2)
        with pytest.raises(QueueFull, match="1 verification.s. running and 2 waiting"):
            async with admission.slot():
                pass
        leaving.cancel()  # its caller hung up: it leaves the queue, and there is room again
        await asyncio.sleep(0)
        assert admission.waiting == 1
        late = asyncio.create_task(request("d"))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, waiting, late)
        assert (admission.running, admission.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["a:0", "c:2", "d:2"]


def _target(cluster_id: str) -> laser_pb2.Target:
    return laser_pb2.Target(database="laser_demo", role="shop", server_id=cluster_id)


def _request(query: str, cluster_id: str) -> laser_pb2.RewriteRequest:
    return laser_pb2.RewriteRequest(query=query, target=_target(cluster_id), options=laser_pb2.Options(no_cache=True))


def _verifier_sessions(admin_dsn: str) -> int:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'laser-verifier'"
                           " AND backend_type = 'client backend' AND state <> 'idle'").fetchone()
    return int(row[0]) if row else 0


def _wait_for(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_beyond_the_queue_a_fast_retryable_refusal_and_cancelled_callers_stop(cluster: Any, cluster_id: str,
                                                                             admin_dsn: str) -> None:
    with running_sidecar(cluster, "--max-concurrent", "1", "--max-queued", "1") as address, \
            grpc.insecure_channel(address) as channel:
        stub = laser_pb2_grpc.LaserStub(channel)
        running = stub.Rewrite.future(_request(SLOW, cluster_id), timeout=120)
        assert _wait_for(lambda: _verifier_sessions(admin_dsn) > 0, 30), "the first request never started"
        queued = stub.Rewrite.future(_request(QUICK, cluster_id), timeout=120)
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            stub.Rewrite(_request(QUICK, cluster_id), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "retry later" in (refused.value.details() or "")
        assert time.monotonic() - started < 1.0, "a refusal must not wait"

        queued.cancel()  # the queued caller hangs up: its place is free at once
        time.sleep(0.3)
        another = stub.Rewrite.future(_request(QUICK, cluster_id), timeout=120)
        time.sleep(0.3)
        assert not another.done(), "the cancelled request still held the queue's place"

        started = time.monotonic()
        running.cancel()  # the running caller hangs up: its verification stops
        assert _wait_for(lambda: _verifier_sessions(admin_dsn) == 0 and another.done(), 10)
        assert another.result().status == "no_verified_improvement"
        assert time.monotonic() - started < 10
        evidence = json.loads(another.result().evidence_json)
        assert evidence["queue_wait_ms"] > 300
        assert abs(another.result().queue_wait_ms - evidence["queue_wait_ms"]) < 0.01


def _call_in_session(dsn: str, address: str, query: str, setup: str = "") -> tuple[str | None, str, float, int]:
    """(SQLSTATE or None, message, seconds, backend pid) of `SELECT laser_rewrite_evidence(query)` in its
    own session."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (address,))
        if setup:
            conn.execute(setup)
        started = time.monotonic()
        try:
            conn.execute("SELECT laser_rewrite_evidence(%s)", (query,))
        except psycopg.Error as exc:
            return exc.sqlstate, str(exc), time.monotonic() - started, conn.info.backend_pid
        return None, "", time.monotonic() - started, conn.info.backend_pid


def test_a_statement_timeout_or_a_cancel_in_the_calling_session_stops_the_verification(
        cluster: Any, demo_dsn: str, admin_dsn: str) -> None:
    with running_sidecar(cluster, "--max-concurrent", "1") as address:
        sqlstate, message, seconds, _ = _call_in_session(demo_dsn, address, SLOW, "SET statement_timeout = '2s'")
        assert sqlstate == "57014" and "statement timeout" in message
        assert seconds < 4
        assert _wait_for(lambda: _verifier_sessions(admin_dsn) == 0, 3), "the verification outlived its caller"

        answers: list[tuple[str | None, str, float, int]] = []
        caller = threading.Thread(target=lambda: answers.append(_call_in_session(demo_dsn, address, SLOW)))
        caller.start()
        assert _wait_for(lambda: _verifier_sessions(admin_dsn) > 0, 30)
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                          " WHERE query LIKE 'SELECT laser_rewrite_evidence(%%' AND pid <> pg_backend_pid()")
        caller.join(10)
        assert answers and answers[0][0] == "57014" and "user request" in answers[0][1]
        assert _wait_for(lambda: _verifier_sessions(admin_dsn) == 0, 3), "the verification outlived its caller"


def test_a_full_queue_reaches_psql_as_sqlstate_53000_and_queue_waits_are_reported(
        cluster: Any, demo_dsn: str, admin_dsn: str) -> None:
    with running_sidecar(cluster, "--max-concurrent", "1", "--max-queued", "0") as address, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(_call_in_session, demo_dsn, address, SLOW, "SET statement_timeout = '60s'")
        assert _wait_for(lambda: _verifier_sessions(admin_dsn) > 0, 30)
        sqlstate, message, seconds, _ = _call_in_session(demo_dsn, address, QUICK)
        assert sqlstate == "53000" and "the sidecar is busy" in message
        assert seconds < 1.0
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                          " WHERE query LIKE 'SELECT laser_rewrite_evidence(%%' AND pid <> pg_backend_pid()")
        assert first.result(timeout=10)[0] == "57014"

    with running_sidecar(cluster, "--max-concurrent", "1", "--max-queued", "4") as address, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        quick = [f"SELECT id FROM users WHERE id = {n}" for n in (3, 4)]
        answers = list(pool.map(lambda q: _evidence(demo_dsn, address, q), quick))
    waits = sorted(a["queue_wait_ms"] for a in answers)
    assert waits[0] >= 0 and waits[1] > 0, "the second of two requests at once waited for the slot"


def _evidence(dsn: str, address: str, query: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (address,))
        row = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()
    assert row is not None
    return dict(row[0])
