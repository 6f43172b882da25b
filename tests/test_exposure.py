"""Exposure: the sidecar trusts the identity each request names, so it listens only where that trust
is given: loopback or a Unix socket, or anywhere with a shared-secret token every call must carry.
Real sidecar processes, the real cluster, laser_rewrite from psql sessions."""
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
from grpc_health.v1 import health_pb2, health_pb2_grpc
from laser_proto import laser_pb2, laser_pb2_grpc
from sidecars import free_address, running_sidecar

from laser import daemon
from laser.localdb import LocalCluster
from sidecar.auth import call_metadata
from sidecar.config import SidecarConfig

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token-for-tests"


def _readable_by_server(path: Path, mode: int = 0o644) -> Path:
    """A file (and its directory) the database server's OS user can read, as a real deployment has it."""
    path.parent.chmod(0o755)
    for parent in path.parents:
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("listen", ["0.0.0.0:50551", "[::]:50551", ":50551", "10.1.2.3:50551", "db1:50551"])
def test_a_non_loopback_address_without_a_token_is_refused(listen: str) -> None:
    with pytest.raises(ValueError, match="refusing to listen on .* without a token"):
        SidecarConfig(listen=listen)
    assert SidecarConfig(listen=listen, token="t").listen == listen


def test_the_sidecar_does_not_start_exposed_without_a_token(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "sidecar.server", "--listen", "0.0.0.0:0"], capture_output=True,
                          text=True, timeout=120, cwd=str(ROOT))
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 without a token" in done.stderr
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    done = subprocess.run([sys.executable, "-m", "sidecar.server", "--listen", "0.0.0.0:0", "--token-file", str(empty)],
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert done.returncode == 2 and "is empty" in done.stderr


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "sidecar.token"
    path.write_text(TOKEN + "\n")
    return _readable_by_server(path)


@pytest.fixture()
def exposed(cluster: LocalCluster, token_file: Path) -> Iterator[str]:
    """A sidecar on every interface, with a token file; yields a loopback address to reach it."""
    port = free_address().rsplit(":", 1)[1]
    with running_sidecar(cluster, "--token-file", str(token_file), address=f"0.0.0.0:{port}"):
        yield f"127.0.0.1:{port}"


def _verify(address: str, cluster_id: str, metadata: tuple[tuple[str, str], ...]) -> laser_pb2.VerifyResponse:
    request = laser_pb2.VerifyRequest(original="SELECT 1 AS a", candidate="SELECT 1 AS a", target=laser_pb2.Target(
        database="laser_demo", role="shop", server_id=cluster_id))
    with grpc.insecure_channel(address) as channel:
        reply: laser_pb2.VerifyResponse = laser_pb2_grpc.LaserStub(channel).Verify(request, timeout=60,
                                                                                   metadata=metadata)
        return reply


def test_every_call_needs_the_token_and_a_rotated_file_applies_at_once(exposed: str, cluster_id: str,
                                                                       token_file: Path) -> None:
    for metadata, why in (((), "needs a token"), (call_metadata("wrong"), "not the sidecar's token"),
                          ((("authorization", "Bearer"),), "not the sidecar's token")):
        with pytest.raises(grpc.RpcError) as refused:
            _verify(exposed, cluster_id, metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert why in (refused.value.details() or "")
    assert _verify(exposed, cluster_id, call_metadata(TOKEN)).outcome.status
    with grpc.insecure_channel(exposed) as channel:  # probes need no token
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    token_file.write_text("rotated\n")
    with pytest.raises(grpc.RpcError) as stale:
        _verify(exposed, cluster_id, call_metadata(TOKEN))
    assert stale.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _verify(exposed, cluster_id, call_metadata("rotated")).outcome.status


def test_the_token_from_the_environment(cluster: LocalCluster, cluster_id: str, tmp_path: Path) -> None:
    address = free_address()
    process = subprocess.Popen([sys.executable, "-m", "sidecar.server", "--listen", address, "--dsn",
                                cluster.sidecar_dsn()], cwd=str(ROOT), stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT, env={**os.environ, "LASER_SIDECAR_TOKEN": TOKEN})
    try:
        daemon.wait_serving(address, timeout_s=60, process=process)
        with pytest.raises(grpc.RpcError) as refused:
            _verify(address, cluster_id, ())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _verify(address, cluster_id, call_metadata(TOKEN)).outcome.status
        query = tmp_path / "q.sql"
        query.write_text("SELECT 1 AS one")
        cli = [sys.executable, "-m", "laser.cli", "verify", "--dsn", cluster.dsn("laser_demo"), "--original",
               str(query), "--candidate", str(query), "--sidecar", address]
        bare = subprocess.run(cli, capture_output=True, text=True, cwd=str(ROOT), timeout=120,
                              env={k: v for k, v in os.environ.items() if not k.startswith("LASER_SIDECAR_TOKEN")})
        assert bare.returncode == 1 and "UNAUTHENTICATED" in bare.stderr
        ok = subprocess.run(cli, capture_output=True, text=True, cwd=str(ROOT), timeout=120,
                            env={**os.environ, "LASER_SIDECAR_TOKEN": TOKEN})
        assert ok.returncode == 0, ok.stderr
    finally:
        process.terminate()
        process.wait(timeout=30)


def _rewrite_in_session(dsn: str, **settings: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute("SELECT set_config(%s, %s, false)", (f"laser.{name}", value))
        try:
            row = conn.execute("SELECT laser_rewrite('SELECT id FROM users WHERE id = 5')").fetchone()
        except psycopg.Error as exc:
            return exc
    return row[0] if row else None


def test_laser_rewrite_sends_the_token_only_to_the_address_in_its_credentials_file(
        exposed: str, demo_dsn: str, tmp_path: Path) -> None:
    refused = _rewrite_in_session(demo_dsn, sidecar_address=exposed)
    assert isinstance(refused, psycopg.Error) and refused.sqlstate == "28000"
    assert "needs a token" in str(refused)

    credentials = tmp_path / "credentials.toml"
    credentials.write_text(f'address = "{exposed}"\ntoken = "{TOKEN}"\n')
    _readable_by_server(credentials)
    # The file's address wins over a session's laser.sidecar_address: the token never goes elsewhere.
    answer = _rewrite_in_session(demo_dsn, sidecar_address="127.0.0.1:9", sidecar_credentials=str(credentials))
    assert answer == "SELECT id FROM users WHERE id = 5"

    credentials.write_text(f'address = "{exposed}"\ntoken = "wrong"\n')
    wrong = _rewrite_in_session(demo_dsn, sidecar_credentials=str(credentials))
    assert isinstance(wrong, psycopg.Error) and wrong.sqlstate == "28000"

    secret = tmp_path / "not-credentials.txt"
    secret.write_text("password = 'do not show me'\n")
    _readable_by_server(secret)
    unusable = _rewrite_in_session(demo_dsn, sidecar_credentials=str(secret))
    assert isinstance(unusable, psycopg.Error) and unusable.sqlstate == "22023"
    assert "do not show me" not in str(unusable) and "cannot be used" in str(unusable)
    missing = _rewrite_in_session(demo_dsn, sidecar_credentials=str(tmp_path / "nowhere"))
    assert isinstance(missing, psycopg.Error) and str(missing).replace("nowhere", "") == str(unusable).replace(
        "not-credentials.txt", "")


def test_a_unix_socket_listener_serves_laser_rewrite(cluster: LocalCluster, demo_dsn: str, tmp_path: Path) -> None:
    """Who may connect is who may enter the socket's directory: here root and the server's group (the
    sidecar runs with umask 007, as `UMask=0007` in its systemd unit would have it)."""
    directory = Path("/tmp") / f"laser-sock-{os.getpid()}"
    directory.mkdir(mode=0o750)
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, "root", "postgres")
        directory.chmod(0o2750)  # setgid: the socket gets the directory's group
        socket = f"unix:{directory / 'sidecar.sock'}"
        process = subprocess.Popen([sys.executable, "-m", "sidecar.server", "--listen", socket, "--dsn",
                                    cluster.sidecar_dsn()], cwd=str(ROOT), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT, preexec_fn=lambda: os.umask(0o007))
        try:
            daemon.wait_serving(socket, timeout_s=60, process=process)
            assert _rewrite_in_session(demo_dsn, sidecar_address=socket) == "SELECT id FROM users WHERE id = 5"
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
