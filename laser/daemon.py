"""Runs the sidecar in the background for the embedded default (pid file, log, health wait)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def health_status(address: str, timeout_s: float = 1.0) -> str:
    """SERVING / NOT_SERVING / UNREACHABLE for the sidecar at `address`."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def wait_serving(address: str, timeout_s: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if health_status(address) == "SERVING":
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the sidecar exited with code {process.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"the sidecar at {address} did not become healthy within {timeout_s:.0f} s")


def start_background(state_dir: Path, listen: str, dsn: str, extra: list[str] | None = None) -> int:
    """Start `laser-sidecar` detached unless one already serves `listen`; return its pid (0 if reused)."""
    if health_status(listen) == "SERVING":
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "sidecar.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.server", "--listen", listen, "--dsn", dsn, *(extra or [])],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    (state_dir / "sidecar.pid").write_text(f"{process.pid}\n")
    try:
        wait_serving(listen, process=process)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; see {state_dir / 'sidecar.log'}") from None
    return process.pid


def stop_background(state_dir: Path, timeout_s: float = 15.0) -> bool:
    """Stop the background sidecar started by start_background; True if one was running."""
    pid_file = state_dir / "sidecar.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True
