"""Faults: a sidecar killed mid-verification or mid-capture, a sidecar that accepts and never answers,
a network stall mid-call, and pg_cron running a scheduled capture for real.

Each fault must give the caller a clear error within its timeout, leave no verifier backend, lock or
temporary table behind, and lose no advisory row.
"""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sidecars import ROOT, free_address

from laser import daemon, demo
from laser.localdb import LocalCluster

SLOW_QUERY = "SELECT count(*) AS n FROM generate_series(1, 60000000) AS g"
"""Seconds of work for the verifier: the window in which a fault strikes."""


@contextlib.contextmanager
def killable_sidecar(cluster: LocalCluster) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    address = free_address()
    process = subprocess.Popen([sys.executable, "-m", "sidecar.server", "--listen", address,
                                "--dsn", cluster.sidecar_dsn()], cwd=str(ROOT),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        daemon.wait_serving(address, timeout_s=60, process=process)
        yield address, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


class _Silent:
    """A TCP listener that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class _StallingProxy(_Silent):
    """Forwards to `target` until `stall` is set, then holds every byte (connections stay open)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stall = threading.Event()
        super().__init__()

    def _accept(self) -> None:
        host, port = self.target.rsplit(":", 1)
        with contextlib.suppress(OSError):
            while True:
                client = self.sock.accept()[0]
                upstream = socket.create_connection((host, int(port)))
                self.accepted += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self.stall.is_set():
                    time.sleep(0.05)
                sink.sendall(data)


def _rewrite(dsn: str, address: str, timeout_ms: int, query: str = SLOW_QUERY) -> tuple[float, BaseException | None]:
    """laser_rewrite(query) from a fresh session using this sidecar address: (seconds, its error)."""
    start = time.monotonic()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"SET laser.sidecar_address = '{address}'")
            conn.execute(f"SET laser.timeout_ms = {int(timeout_ms)}")
            conn.execute("SELECT laser_rewrite(%s)", (query,))
    except psycopg.Error as exc:
        return time.monotonic() - start, exc
    return time.monotonic() - start, None


def _left_behind(admin: psycopg.Connection[Any], wait_s: float = 15.0) -> list[tuple[Any, ...]]:
    """Verifier backends still there after `wait_s`, with their locks and temporary tables."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = admin.execute(
            "SELECT a.pid, a.state, (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid) AS locks"
            " FROM pg_stat_activity a WHERE a.application_name = 'laser-verifier'").fetchall()
        if not rows or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    temporary = admin.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").fetchone()[0]
    return rows + ([("temporary tables", temporary)] if temporary else [])


def _advisories(admin: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return admin.execute("SELECT id, status FROM laser.advisories ORDER BY id").fetchall()


def test_sidecar_that_never_answers_times_out_clearly(demo_dsn: str) -> None:
    silent = _Silent()
    try:
        elapsed, error = _rewrite(demo_dsn, silent.address, timeout_ms=2_000, query="SELECT 1")
    finally:
        silent.close()
    assert error is not None and "no answer from the sidecar" in str(error), error
    assert elapsed < 2.0 + 3.0, elapsed


def test_network_stall_mid_call_times_out_clearly(cluster: LocalCluster, demo_dsn: str, admin) -> None:
    with killable_sidecar(cluster) as (address, _):
        proxy = _StallingProxy(address)
        try:
            threading.Timer(1.0, proxy.stall.set).start()
            elapsed, error = _rewrite(demo_dsn, proxy.address, timeout_ms=4_000)
        finally:
            proxy.close()
        assert error is not None and "no answer from the sidecar" in str(error), error
        assert elapsed < 4.0 + 3.0, elapsed
    assert not _left_behind(admin, wait_s=60)


def test_sidecar_killed_during_verification(cluster: LocalCluster, demo_dsn: str, admin) -> None:
    before = _advisories(admin)
    with killable_sidecar(cluster) as (address, process):
        threading.Timer(1.5, process.send_signal, args=(signal.SIGKILL,)).start()
        elapsed, error = _rewrite(demo_dsn, address, timeout_ms=60_000)
    assert error is not None and "sidecar" in str(error), error
    assert elapsed < 10, elapsed  # the broken connection is noticed at once, not at the 60 s timeout
    assert not _left_behind(admin)
    assert _advisories(admin) == before


def test_sidecar_killed_during_capture(cluster: LocalCluster, admin) -> None:
    before = _advisories(admin)
    with psycopg.connect(cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE), autocommit=True) as shop:
        for _ in range(3):  # a slow statement in pg_stat_statements for the capture to pick up
            shop.execute(SLOW_QUERY)
    last = admin.execute("SELECT coalesce(max(id), 0) FROM laser.capture_runs").fetchone()[0]
    with killable_sidecar(cluster) as (address, process):
        threading.Timer(3.0, process.send_signal, args=(signal.SIGKILL,)).start()
        start = time.monotonic()
        admin.execute(f"SET laser.sidecar_address = '{address}'")
        admin.execute("SET laser.timeout_ms = 60000")
        admin.execute("CALL laser.capture(min_mean_ms => 100, top_n => 3, budget_s => 60)")
        elapsed = time.monotonic() - start
    assert elapsed < 30, elapsed
    runs = admin.execute("SELECT status, message FROM laser.capture_runs WHERE id > %s", (last,)).fetchall()
    assert runs and all(status != "running" for status, _ in runs), runs  # recorded, and closed
    assert not _left_behind(admin)
    assert set(before) <= set(_advisories(admin))


def test_pg_cron_runs_a_scheduled_capture(cluster: LocalCluster, sidecar: str, admin) -> None:
    if not cluster.pg_cron_installed():
        pytest.skip("pg_cron is not installed (Debian: postgresql-15-cron; `make setup` installs it)")
    if "pg_cron" not in admin.execute("SHOW shared_preload_libraries").fetchone()[0]:
        pytest.skip("this test cluster was created before pg_cron was installed: remove .laser-test to recreate it")
    admin.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    last = admin.execute("SELECT coalesce(max(id), 0) FROM laser.capture_runs").fetchone()[0]
    jobs = admin.execute("SELECT job FROM laser.schedule('* * * * *', '0 0 1 1 *')").fetchall()
    assert [j for (j,) in jobs] == ["laser-capture", "laser-revalidate"]
    try:
        # The job laser.schedule() made, run every minute with a small budget to keep the test short.
        admin.execute("SELECT cron.alter_job(jobid, command => 'CALL laser.capture(top_n => 1, budget_s => 20)')"
                      " FROM cron.job WHERE jobname = 'laser-capture'")
        deadline = time.monotonic() + 150
        runs: list[tuple[Any, ...]] = []
        while time.monotonic() < deadline and not runs:
            time.sleep(2)
            runs = admin.execute("SELECT status, message FROM laser.capture_runs WHERE id > %s"
                                 " AND finished_at IS NOT NULL", (last,)).fetchall()
        assert runs, "pg_cron did not run the scheduled capture within 150 s"
        assert runs[0][0] == "finished", runs
        details = admin.execute("SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
                                " WHERE j.jobname = 'laser-capture'").fetchall()
        assert ("succeeded",) in details or not details, details
    finally:
        admin.execute("SELECT cron.unschedule(jobname) FROM cron.job WHERE jobname LIKE 'laser-%'")
        # Leave the demo database as it was: other tests list every table the role `shop` sees.
        admin.execute("DROP EXTENSION pg_cron")


def test_postgresql_restart_during_rewrite(cluster: LocalCluster, demo_dsn: str, admin_dsn: str) -> None:
    """Last in this file: the whole cluster restarts under a laser_rewrite (pg_ctl stop -m fast)."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        before = _advisories(admin)
    with killable_sidecar(cluster) as (address, process):
        def restart() -> None:
            cluster.stop()
            cluster.start()
            cluster.wait_ready()

        restarting = threading.Timer(1.5, restart)
        restarting.start()
        elapsed, error = _rewrite(demo_dsn, address, timeout_ms=60_000)
        restarting.join(timeout=90)
        assert isinstance(error, psycopg.OperationalError), error  # the caller's own session ended
        assert elapsed < 30, elapsed
        assert process.poll() is None  # the sidecar is still up, and serves the next call
        again, error = _rewrite(demo_dsn, address, timeout_ms=60_000, query="SELECT id FROM users WHERE id = 42")
        assert error is None, error
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        assert not _left_behind(admin)
        assert _advisories(admin) == before
