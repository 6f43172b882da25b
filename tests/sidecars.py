"""A real sidecar process for the tests: on a free port, healthy before it is used, stopped after."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from laser import daemon
from laser.localdb import LocalCluster

ROOT = Path(__file__).resolve().parent.parent


def server_id(cluster: LocalCluster) -> str:
    """The cluster's system identifier: what a request names as its server (Target.server_id)."""
    return cluster.psql("-tAc", "SELECT system_identifier FROM pg_control_system()").stdout.strip()


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@contextlib.contextmanager
def running_sidecar(cluster: LocalCluster, *flags: str, address: str | None = None, log: Path | None = None,
                    timeout_s: float = 60) -> Iterator[str]:
    """`python -m sidecar.server` for the test cluster with these flags; yields its address."""
    address = address or free_address()
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar.server", "--listen", address, "--dsn", cluster.sidecar_dsn(), *flags],
        stdout=output, stderr=subprocess.STDOUT, cwd=str(ROOT),
    )
    try:
        daemon.wait_serving(address, timeout_s=timeout_s, process=process)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)
        if log is not None and not isinstance(output, int):
            output.close()
