"""The database a request names is the database it is verified on: a request carries its server's
system identifier, and a sidecar serving another server refuses it, naming both. Two real clusters."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from laser_proto import laser_pb2, laser_pb2_grpc
from sidecars import running_sidecar, server_id

from laser.localdb import LocalCluster, default_state_dir

OTHER_PORT = int(os.environ.get("LASER_TEST_OTHER_PG_PORT", "54342"))
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def other_cluster(cluster: LocalCluster) -> Iterator[LocalCluster]:
    """A second, bare cluster (its own system identifier; no laser_demo database), removed afterwards."""
    state = Path(f"{default_state_dir()}-test-other")
    other = LocalCluster(state, OTHER_PORT, sidecar_address=cluster.sidecar_address)
    other.start()
    other.wait_ready()
    other.ensure_sidecar_role()
    try:
        yield other
    finally:
        other.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_a_request_for_another_server_is_refused_naming_both(cluster: LocalCluster, cluster_id: str,
                                                              other_cluster: LocalCluster) -> None:
    theirs = server_id(other_cluster)
    assert theirs != cluster_id
    request = laser_pb2.VerifyRequest(original="SELECT 1", candidate="SELECT 2", target=laser_pb2.Target(
        database="laser_demo", role="shop", server_id=theirs, server="host=elsewhere port=5433"))
    with running_sidecar(cluster) as address, grpc.insecure_channel(address) as channel:
        stub = laser_pb2_grpc.LaserStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Verify(request, timeout=30)
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        detail = failed.value.details() or ""
        for named in (theirs, cluster_id, "host=elsewhere port=5433", f"port={cluster.port}"):
            assert named in detail
        request.target.ClearField("server_id")
        with pytest.raises(grpc.RpcError) as unnamed:
            stub.Verify(request, timeout=30)
        assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "does not say which PostgreSQL server" in (unnamed.value.details() or "")


def _laser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "laser.cli", *args], capture_output=True, text=True, cwd=str(ROOT),
                          timeout=120)


def test_the_cli_pointed_at_another_server_gets_a_clear_error(cluster: LocalCluster, cluster_id: str,
                                                               other_cluster: LocalCluster, tmp_path: Path) -> None:
    query = tmp_path / "q.sql"
    query.write_text("SELECT 1 AS one")
    with running_sidecar(cluster) as address:
        wrong = _laser("rewrite", "--dsn", other_cluster.dsn(), "--file", str(query), "--sidecar", address)
        assert wrong.returncode == 1
        assert "FAILED_PRECONDITION" in wrong.stderr
        for named in (server_id(other_cluster), cluster_id, f"port={other_cluster.port}", f"port={cluster.port}"):
            assert named in wrong.stderr
        verify = _laser("verify", "--dsn", other_cluster.dsn(), "--original", str(query), "--candidate", str(query),
                        "--sidecar", address)
        assert verify.returncode == 1 and server_id(other_cluster) in verify.stderr
        right = _laser("rewrite", "--dsn", cluster.dsn(), "--file", str(query), "--sidecar", address)
        assert right.returncode == 0, right.stderr


def test_laser_rewrite_asking_another_servers_sidecar_fails_with_55000(other_cluster: LocalCluster,
                                                                        demo_dsn: str, cluster_id: str) -> None:
    """laser.sidecar_address naming the sidecar of another cluster (which has no laser_demo): not
    "database does not exist" but which servers they are."""
    with running_sidecar(other_cluster) as address, psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (address,))
        with pytest.raises(psycopg.Error) as failed:
            conn.execute("SELECT laser_rewrite('SELECT 1')")
    error: Any = failed.value
    assert error.sqlstate == "55000"
    assert cluster_id in str(error) and server_id(other_cluster) in str(error)
