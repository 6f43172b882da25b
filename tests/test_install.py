"""On your own server: the wheel, `laser install`, `laser doctor`, `laser sidecar --config`, the systemd unit.

The acceptance test builds the wheel, installs it (without extras) into a fresh virtualenv, creates a
second PostgreSQL 15 cluster with Debian's pg_createcluster (not the project's cluster helper), runs
`laser install` and `laser doctor` from that virtualenv, applies the fixes doctor prints, starts the
sidecar from the wheel as a service would (TOML config, readiness notification, SIGTERM) and gets a
verified rewrite through laser_rewrite in that cluster.
"""
from __future__ import annotations

import argparse
import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

import sidecar
from laser import daemon
from laser.cli import main as laser_main
from laser.localdb import EXTENSION_VERSION
from sidecar.config import SidecarConfig, config_from_args, read_config_file
from sidecar.server import add_arguments

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_CONFIG = str(PG_BIN / "pg_config")
CLUSTER = "laser_install_test"
CLUSTER_PORT = int(os.environ.get("LASER_TEST_INSTALL_PORT", "54349"))  # not the demo's 54329 or the tests' 54339
SERVICE_DIR = ROOT / "laser" / "service"
SLOW_QUERY = "SELECT id, amount FROM orders WHERE created_at::date = DATE '2024-03-07'"


# -- the configuration file, the unit, bad input: no cluster needed ---------------------------------------------

def test_sidecar_config_file_is_layered_under_flags(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.toml"
    config.write_text('listen = "127.0.0.1:50600"\nact_as = "set_role"\ndead_zone = 0\nmax_candidates = 2\n'
                      'with_rules = false\n')
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = config_from_args(parser.parse_args(["--config", str(config), "--max-candidates", "5"]))
    assert (settings.listen, settings.act_as, settings.dead_zone, settings.max_candidates, settings.with_rules) == (
        "127.0.0.1:50600", "set_role", 0.0, 5, False)


def test_the_example_config_is_valid_and_documents_the_defaults() -> None:
    values = read_config_file(SERVICE_DIR / "sidecar.toml")
    settings = SidecarConfig(**values)
    assert settings.listen == SidecarConfig().listen
    assert settings.act_as == "login" and settings.backend == "rules"


@pytest.mark.parametrize(("text", "message"), [
    ('listen = "127.0.0.1:50600"\nlisten_port = 5\n', "unknown setting 'listen_port' (did you mean 'listen'?)"),
    ("max_candidates = \"four\"\n", "max_candidates must be an integer, got 'four'"),
    ("with_rules = 1\n", "with_rules must be true or false, got 1"),
    ("[sidecar]\nlisten = \"x\"\n", "unknown setting 'sidecar'"),
    ("listen = \n", "is not valid TOML"),
    ('act_as = "root"\n', "act_as must be 'login' or 'set_role'; got 'root'"),
])
def test_a_bad_config_file_is_a_clear_error_and_nothing_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              text: str, message: str) -> None:
    config = tmp_path / "sidecar.toml"
    config.write_text(text)
    assert laser_main(["sidecar", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert laser_main(["sidecar", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read the configuration file" in capsys.readouterr().err


def test_the_releases_agree() -> None:
    from laser_extension.build import VERSION

    assert sidecar.EXTENSION_VERSION == VERSION == EXTENSION_VERSION


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(SERVICE_DIR / "laser-sidecar.service")
    return unit


def test_the_systemd_unit_runs_the_sidecar_as_a_service() -> None:
    service = _unit()["Service"]
    assert service["ExecStart"] == "/opt/laser/bin/laser sidecar --config /etc/laser/sidecar.toml"
    assert service["Type"] == "notify"  # READY=1 once health is SERVING (checked in the acceptance test)
    assert service["User"] and service["DynamicUser"] == "yes"  # unprivileged
    assert service["Restart"] == "on-failure"
    assert service["StandardOutput"] == service["StandardError"] == "journal"
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > SidecarConfig().grace_s
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "laser-sidecar.service"
    laser = Path(sys.executable).parent / "laser"
    unit.write_text((SERVICE_DIR / "laser-sidecar.service").read_text().replace("/opt/laser/bin/laser", str(laser)))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_install_refuses_bad_input_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pylib = tmp_path / "pylib"
    assert laser_main(["install", "--pg-config", str(tmp_path / "pg_config"), "--pylib", str(pylib)]) == 2
    assert "is not an executable pg_config" in capsys.readouterr().err
    unreachable = f"host={tmp_path} port=1 dbname=postgres user=postgres"
    assert laser_main(["install", "--pg-config", PG_CONFIG, "--pylib", str(pylib), "--dsn", unreachable]) == 2
    assert "nothing was installed" in capsys.readouterr().err
    assert not pylib.exists()


# -- the acceptance test: wheel, fresh virtualenv, a second cluster made by Debian's tools ----------------------

@dataclass(frozen=True)
class Installed:
    """The wheel installed into a fresh virtualenv, and a scratch directory for the run."""

    venv: Path
    work: Path

    def laser(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`laser` of the virtualenv, run outside the checkout so nothing is imported from it."""
        return subprocess.run([str(self.venv / "bin" / "laser"), *args], capture_output=True, text=True,
                              cwd=self.work, timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    work = Path(tempfile.mkdtemp(prefix="laser-install-"))
    try:
        subprocess.run([sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(ROOT)], check=True,
                       capture_output=True, text=True, timeout=600)
        wheels = list((work / "dist").glob("laser_pg-*.whl"))
        assert len(wheels) == 1, wheels
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                        str(wheels[0])], check=True, capture_output=True, text=True, timeout=600)
        yield Installed(venv, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _pg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300)


def _drop_cluster() -> None:
    if _pg("pg_lsclusters", "-h").stdout.split().count(CLUSTER):
        _pg("pg_dropcluster", "--stop", "15", CLUSTER)


@pytest.fixture(scope="module")
def second_cluster() -> Iterator[str]:
    """A PostgreSQL 15 cluster made by pg_createcluster, as on a Debian server: its socket in
    /var/run/postgresql, peer authentication mapped so that root may log in as the test's roles (as a
    DBA maps the sidecar's OS user). Yields the superuser's DSN; dropped afterwards."""
    if os.geteuid() != 0 or shutil.which("pg_createcluster") is None:
        pytest.skip("pg_createcluster (postgresql-common) run as root is needed for a second cluster")
    _drop_cluster()
    created = _pg("pg_createcluster", "15", CLUSTER, "-p", str(CLUSTER_PORT))
    assert created.returncode == 0, created.stderr
    try:
        config = Path("/etc/postgresql/15") / CLUSTER
        hba = config / "pg_hba.conf"
        hba.write_text("local all all peer map=laser\n" + "".join(
            line + "\n" for line in hba.read_text().splitlines() if not line.startswith("local")))
        with (config / "pg_ident.conf").open("a") as ident:
            # laser_other is left out: the sidecar may not log in as it.
            for os_user, role in (("postgres", "postgres"), ("root", "postgres"), ("root", "laser_app"),
                                  ("root", "laser_sidecar")):
                ident.write(f"laser {os_user} {role}\n")
        started = _pg("pg_ctlcluster", "15", CLUSTER, "start")
        assert started.returncode == 0, started.stderr
        yield f"host=/var/run/postgresql port={CLUSTER_PORT} dbname=postgres user=postgres"
    finally:
        _drop_cluster()


def _fix(output: str, check: str) -> str:
    """The status and the fix `laser doctor` printed for `check`."""
    found = re.search(rf"^  (\S+)\s+{re.escape(check)}\s{{2,}}.*\n(?:\s+fix: (.*))?", output, re.MULTILINE)
    assert found is not None, f"no {check!r} in:\n{output}"
    return f"{found.group(1)}: {found.group(2) or ''}"


def _run_sql(dsn: str, script: str) -> None:
    """Each statement of `script` in autocommit, as one psql session would run them (ALTER SYSTEM too)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in (s.strip() for s in script.split(";")):
            if statement and not statement.startswith("--"):
                conn.execute(statement)


def _free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_on_your_own_server(installed: Installed, second_cluster: str) -> None:
    admin = second_cluster
    address = _free_address()
    venv_python = installed.venv / "bin" / "python"

    # The wheel alone: the sidecar and the extension's files come from the virtualenv, without torch.
    where = subprocess.run([str(venv_python), "-c", "import sidecar, laser_extension, importlib.util; "
                            "print(sidecar.__file__, laser_extension.__file__, importlib.util.find_spec('torch'))"],
                           capture_output=True, text=True, cwd=installed.work, check=True).stdout.split()
    assert all(path.startswith(str(installed.venv)) for path in where[:2]) and where[2] == "None", where

    # laser install: the files, then what the server still needs (it checks the running server too).
    done = installed.laser("install", "--pg-config", PG_CONFIG, "--dsn", admin)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"installed laser {sidecar.EXTENSION_VERSION} into /usr/share/postgresql/15/extension" in done.stdout
    assert _fix(done.stdout, "pg_stat_statements preloaded").startswith(
        "FAIL: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';")
    assert "  CREATE EXTENSION laser CASCADE;" in done.stdout
    unit = installed.venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" \
        / "laser" / "service" / "laser-sidecar.service"
    assert f"sed 's#/opt/laser/bin/laser#{installed.venv}/bin/laser#' {unit} > " \
           "/etc/systemd/system/laser-sidecar.service" in done.stdout and unit.is_file()

    # laser doctor: pg_stat_statements not preloaded, the sidecar down; each with its fix, exit 1.
    done = installed.laser("doctor", "--dsn", admin, "--sidecar", address)
    assert done.returncode == 1, done.stdout + done.stderr
    preload = _fix(done.stdout, "pg_stat_statements preloaded")
    assert preload == ("FAIL: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; "
                       f"then restart PostgreSQL (pg_ctlcluster 15 {CLUSTER} restart)"), done.stdout
    assert _fix(done.stdout, "sidecar") == (
        "FAIL: start it: systemctl start laser-sidecar, or laser sidecar --config /etc/laser/sidecar.toml; "
        "its log: journalctl -u laser-sidecar")
    assert re.search(rf"FAIL\s+sidecar\s+{address}: not reachable", done.stdout), done.stdout
    assert _fix(done.stdout, "laser extension") == "FAIL: CREATE EXTENSION laser CASCADE;"
    address_fix = _fix(done.stdout, "laser.sidecar_address")
    assert address_fix.startswith(f"warn: SET laser.sidecar_address = '{address}'; ALTER SYSTEM SET"), address_fix

    # The DBA runs the fixes doctor printed, word for word, and restarts as it says.
    _run_sql(admin, preload.removeprefix("FAIL: ").split("; then")[0])
    _run_sql(admin, address_fix.removeprefix("warn: "))
    assert _pg("pg_ctlcluster", "15", CLUSTER, "restart").returncode == 0
    _run_sql(admin, "CREATE ROLE laser_sidecar LOGIN NOINHERIT; "
                    "ALTER ROLE laser_sidecar SET default_transaction_read_only = on; "
                    "CREATE ROLE laser_app LOGIN; CREATE ROLE laser_other LOGIN; CREATE DATABASE shop OWNER laser_app")
    shop_admin = admin.replace("dbname=postgres", "dbname=shop")
    _run_sql(shop_admin, "CREATE EXTENSION laser CASCADE; CREATE EXTENSION pg_stat_statements")
    app = admin.replace("dbname=postgres user=postgres", "dbname=shop user=laser_app")
    _run_sql(app, "CREATE TABLE orders AS SELECT g AS id, timestamp '2024-01-01' + g * interval '1 minute' "
                  "AS created_at, (g % 97)::numeric AS amount FROM generate_series(1, 300000) g; "
                  "CREATE INDEX ON orders (created_at); ANALYZE orders")

    # The sidecar from the wheel, as its systemd unit starts it: a TOML file, readiness notified.
    config = installed.work / "sidecar.toml"
    config.write_text(f'listen = "{address}"\n'
                      f'dsn = "host=/var/run/postgresql port={CLUSTER_PORT} user=laser_sidecar"\n'
                      'act_as = "login"\nbackend = "rules"\n')
    notify_path = installed.work / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(notify_path))
        manager.settimeout(120)
        process = subprocess.Popen([str(installed.venv / "bin" / "laser"), "sidecar", "--config", str(config)],
                                   cwd=installed.work, env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert manager.recv(64) == b"READY=1"
            assert daemon.health_status(address) == "SERVING"  # ready means healthy

            with psycopg.connect(app) as conn:
                rewritten = conn.execute("SELECT laser_rewrite(%s)", (SLOW_QUERY,)).fetchone()[0]
                evidence = conn.execute("SELECT laser_rewrite_evidence(%s)", (SLOW_QUERY,)).fetchone()[0]
            assert evidence["verified"] is True and evidence["status"] == "improved", evidence
            assert evidence["verified_as"] == "laser_app" and evidence["speedup"] > 1.1
            assert rewritten == evidence["rewritten_sql"] != SLOW_QUERY and "created_at >=" in rewritten

            # Now doctor passes, and checks the identity the sidecar takes (login) as the application role.
            done = installed.laser("doctor", "--dsn", shop_admin, "--as-role", "laser_app")
            assert done.returncode == 0, done.stdout
            for name in ("pg_stat_statements preloaded", "pg_stat_statements readable", "laser extension",
                         "sidecar", "sidecar version", "sidecar identity (login)"):
                assert _fix(done.stdout, name).startswith("ok"), name
            assert "verified as laser_app" in done.stdout
            # A role the sidecar may not log in as (pg_ident.conf does not map it): the fix says how.
            done = installed.laser("doctor", "--dsn", shop_admin, "--as-role", "laser_other")
            assert done.returncode == 1
            assert _fix(done.stdout, "sidecar identity (login)").startswith(
                "FAIL: allow the sidecar's OS user to log in as laser_other on the socket in its dsn"), done.stdout
            assert "the sidecar may not log in as 'laser_other'" in done.stdout

            # Graceful stop: health NOT_SERVING, STOPPING=1, exit 0.
            process.send_signal(signal.SIGTERM)
            assert manager.recv(64) == b"STOPPING=1"
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    log = process.stdout.read() if process.stdout else ""
    assert "laser sidecar stopped" in log, log
