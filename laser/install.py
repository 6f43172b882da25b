"""`laser install`: the extension's files and the in-database Python package into a PostgreSQL 15
server, from this installed package (no checkout needed); then what is still to run on that server.

The files come from the package ``laser_extension`` (pg_extension/ in the checkout) and are written by
its ``build.install``: as root directly, otherwise through sudo. Nothing is written when a
prerequisite is missing (pg_config, PostgreSQL 15, plpython3u).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from laser_extension import build

from laser import doctor

SERVICE_DIR = Path(__file__).resolve().parent / "service"
UNIT = SERVICE_DIR / "laser-sidecar.service"
EXAMPLE_CONFIG = SERVICE_DIR / "sidecar.toml"
UNIT_LASER = "/opt/laser/bin/laser"  # ExecStart in the packaged unit
SIDECAR_ROLE = "laser_sidecar"

GENERIC_STEPS = (
    "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';  -- keep the libraries already "
    "there; then restart PostgreSQL",
    "ALTER SYSTEM SET log_min_duration_statement = 100;  -- statements whose parameters laser.capture() samples",
    "CREATE EXTENSION laser CASCADE;  -- in each database that uses LASER",
    "CREATE EXTENSION pg_stat_statements;  -- in the database you CALL laser.capture() in",
)
ROLE_STEP = (f"CREATE ROLE {SIDECAR_ROLE} LOGIN NOINHERIT; "
             f"ALTER ROLE {SIDECAR_ROLE} SET default_transaction_read_only = on;  -- the sidecar's own role")
ADDRESS_STEP = (f"{doctor.alter_system_custom('laser.sidecar_address', '127.0.0.1:50551')}  "
                "-- only where the sidecar listens elsewhere")


class InstallError(Exception):
    """A prerequisite is missing; the message says which and how to get it. Nothing was written."""


@dataclass(frozen=True)
class Server:
    """The PostgreSQL installation a pg_config describes."""

    pg_config: str
    version: str
    extension_dir: Path
    python: str
    """The Python (major.minor) plpython3u runs."""


def inspect(pg_config: str) -> Server:
    """The installation behind `pg_config`, or InstallError when it cannot take the extension."""
    path = Path(pg_config)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise InstallError(f"{pg_config} is not an executable pg_config "
                           "(Debian: /usr/lib/postgresql/15/bin/pg_config, in the postgresql-15 package)")
    done = subprocess.run([pg_config, "--version"], capture_output=True, text=True)
    found = re.match(r"PostgreSQL (\d+)", done.stdout.strip())
    if done.returncode != 0 or found is None:
        raise InstallError(f"{pg_config} --version did not name a PostgreSQL version: {done.stderr.strip()}")
    if found.group(1) != "15":
        raise InstallError(f"{pg_config} is {done.stdout.strip()}; LASER is built and tested for PostgreSQL 15")
    python = build.plpython_version(pg_config)
    if python is None:
        raise InstallError("plpython3u is not installed for this server: apt-get install postgresql-plpython3-15 "
                           "(Debian), then run laser install again")
    return Server(pg_config, done.stdout.strip(), build.sharedir(pg_config) / "extension", python)


def _writable(path: Path) -> bool:
    """Whether `path`, or the nearest directory above it that exists, may be written by this user."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK)


def install_files(server: Server, pylib: Path) -> None:
    """build.install here when this user may write both places; through sudo otherwise."""
    if _writable(server.extension_dir) and _writable(pylib):
        build.install(pylib, server.pg_config)
        return
    if os.geteuid() == 0 or shutil.which("sudo") is None:
        raise InstallError(f"cannot write {server.extension_dir} or {pylib}: run laser install as root")
    command = ["sudo", sys.executable, "-m", "laser_extension.build", "install", "--pylib", str(pylib),
               "--pg-config", server.pg_config]
    print(f"writing as root: {shlex.join(command)}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise InstallError("installing through sudo failed (see above); run laser install as root instead")


def connect(dsn: str) -> tuple[psycopg.Connection, doctor.Server, doctor.Check]:
    """The running server, before anything is written: a DSN that does not connect changes nothing."""
    first, conn, found = doctor.connect_check(dsn)
    if conn is None or found is None:
        raise InstallError(f"cannot check the server: {first.detail} ({first.fix}); nothing was installed")
    return conn, found, first


def server_steps(server: tuple[psycopg.Connection, doctor.Server, doctor.Check] | None
                 ) -> tuple[list[str], list[doctor.Check]]:
    """The SQL and settings still to run, and the checks that told (none without a server to ask)."""
    if server is None:
        return [*GENERIC_STEPS, ROLE_STEP, ADDRESS_STEP], []
    conn, found, first = server
    checks = [first, *doctor.database_checks(conn, found)]
    steps = [c.fix for c in checks if c.status in (doctor.FAIL, doctor.WARN) and c.fix]
    if conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (SIDECAR_ROLE,)).fetchone() is None:
        steps.append(ROLE_STEP)
    return [*steps, ADDRESS_STEP], checks


def service_steps() -> list[str]:
    """The commands that put the packaged systemd unit and an example configuration in place."""
    laser = Path(sys.executable).parent / "laser"
    unit = f"install -m 644 {UNIT} /etc/systemd/system/laser-sidecar.service"
    if str(laser) != UNIT_LASER:
        unit = f"sed 's#{UNIT_LASER}#{laser}#' {UNIT} > /etc/systemd/system/laser-sidecar.service"
    return [
        f"install -D -m 644 {EXAMPLE_CONFIG} /etc/laser/sidecar.toml  # then set dsn (port) and act_as",
        unit,
        "systemctl daemon-reload && systemctl enable --now laser-sidecar  # ready once its gRPC health is SERVING",
        "with act_as = \"login\", let its OS user log in as each calling role: pg_hba.conf `local all all peer "
        "map=laser` first, pg_ident.conf `laser laser-sidecar APP_ROLE` (and `laser /^(.*)$ \\1` to keep the "
        "others' peer logins)",
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pg-config", required=True,
                        help="the server's pg_config (Debian: /usr/lib/postgresql/15/bin/pg_config)")
    parser.add_argument("--pylib", type=Path, default=build.pylib_dir(),
                        help=f"where the in-database Python package goes (default: {build.pylib_dir()})")
    parser.add_argument("--dsn", help="a superuser's libpq conninfo for the running server: check its settings "
                                      "and print only the steps still missing")


def main(args: argparse.Namespace) -> int:
    running = None
    try:
        server = inspect(args.pg_config)
        running = connect(args.dsn) if args.dsn else None
        print(f"{server.version} ({server.pg_config}); plpython3u runs Python {server.python}")
        install_files(server, args.pylib)
        print(f"installed laser {build.VERSION} into {server.extension_dir} (laser.control, "
              f"laser--{build.VERSION}.sql, upgrades from {', '.join(build.EARLIER_VERSIONS)}); "
              f"in-database package: {args.pylib}")
        steps, checks = server_steps(running)
    except InstallError as exc:
        print(f"laser install: {exc}", file=sys.stderr)
        return 2
    finally:
        if running is not None:
            running[0].close()
    if checks:
        print("\nThe server now:")
        print(doctor.render(checks))
    print("\nStill to run on the server, as a superuser:")
    for step in steps:
        print(f"  {step}")
    print("\nThe sidecar as a systemd service:")
    for step in service_steps():
        print(f"  {step}")
    print("\nThen check everything: laser doctor --dsn 'dbname=DB user=postgres' [--as-role APP_ROLE]")
    return 0
