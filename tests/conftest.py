"""Test fixtures: a real PostgreSQL 15 cluster (the project's own helper), the extension, a real sidecar.

One cluster per test session, separate from the demo's (own state directory and port), with the
demo database loaded. Set LASER_TEST_DSN to run the DSN-only tests against a server you started.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sidecars import running_sidecar, server_id

from laser import demo
from laser.localdb import LocalCluster, default_state_dir, install_extension

TEST_PG_PORT = int(os.environ.get("LASER_TEST_PG_PORT", "54339"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def sidecar_address() -> str:
    return f"127.0.0.1:{int(os.environ.get('LASER_TEST_SIDECAR_PORT', '0')) or _free_port()}"


@pytest.fixture(scope="session")
def cluster(sidecar_address: str) -> Iterator[LocalCluster]:
    """The test cluster: started, extension files installed, sidecar role, demo database loaded."""
    state = Path(f"{default_state_dir()}-test")
    instance = LocalCluster(state, TEST_PG_PORT, sidecar_address=sidecar_address)
    instance.start()
    instance.wait_ready()
    instance.ensure_advisor_settings()
    # The address a test sidecar listens on changes per session; keep the setting current.
    instance.psql("-c", f"ALTER SYSTEM SET laser.sidecar_address = '{sidecar_address}'", "-c",
        "SELECT pg_reload_conf()")
    install_extension(instance)
    instance.ensure_sidecar_role()
    demo.ensure_demo_database(instance)
    yield instance
    if not os.environ.get("LASER_TEST_KEEP_CLUSTER"):
        instance.stop()


@pytest.fixture(scope="session")
def sidecar(cluster: LocalCluster, sidecar_address: str) -> Iterator[str]:
    """A real sidecar process serving gRPC for the test cluster; yields its address."""
    with running_sidecar(cluster, address=sidecar_address, log=cluster.state_dir / "sidecar-test.log") as address:
        yield address


@pytest.fixture(scope="session")
def cluster_id(cluster: LocalCluster) -> str:
    """The test cluster's system identifier (Target.server_id of requests for it)."""
    return str(server_id(cluster))


@pytest.fixture(scope="session")
def demo_dsn(request: pytest.FixtureRequest) -> str:
    """libpq conninfo of the demo database (role `shop`), or LASER_TEST_DSN when set."""
    if os.environ.get("LASER_TEST_DSN"):
        return os.environ["LASER_TEST_DSN"]
    instance: LocalCluster = request.getfixturevalue("cluster")
    return instance.dsn(demo.DEMO_DB, demo.DEMO_ROLE)


@pytest.fixture(scope="session")
def admin_dsn(cluster: LocalCluster) -> str:
    """Superuser conninfo of the demo database."""
    return cluster.dsn(demo.DEMO_DB)


@pytest.fixture()
def admin(admin_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        yield conn
