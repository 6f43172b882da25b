"""The embedded default: a local PostgreSQL 15 cluster the project creates, starts and stops itself.

As root, the server runs as the `postgres` OS user (PostgreSQL refuses root) and owns its data
and socket directories. It listens on a Unix socket only, in a directory only that user (and
root) can enter.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from laser.config import LocalSettings

DEFAULTS = LocalSettings()
DEFAULT_SIDECAR_ADDRESS = DEFAULTS.sidecar_address
SIDECAR_ROLE = "laser_sidecar"
EXTENSION_VERSION = "0.3.0"  # pg_extension/build.py VERSION (tests/test_extension.py checks they agree)
PYLIB_ROOT = Path("/usr/local/lib/laser")
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; ".s.PGSQL.NNNNN" must fit


def project_root() -> Path:
    """The checkout this code runs from (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parent.parent


def _is_root() -> bool:
    return os.geteuid() == 0


def _server_user() -> str:
    return "postgres" if _is_root() else pwd.getpwuid(os.geteuid()).pw_name


def _can_server_user_enter(path: Path) -> bool:
    if not _is_root():
        return True
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)], capture_output=True)
    return probe.returncode == 0


def default_state_dir(settings: LocalSettings | None = None) -> Path:
    """<project>/.laser, or a directory under /var/lib/laser when the server user cannot reach it;
    `settings.state_dir` (LASER_STATE_DIR) when set."""
    configured = (settings or LocalSettings.from_env()).state_dir
    if configured:
        return Path(configured).resolve()
    root = project_root()
    if _can_server_user_enter(root):
        return root / ".laser"
    # e.g. a checkout under /root (mode 0700): the postgres user could not enter it.
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return Path("/var/lib/laser") / f"cluster-{digest}"


class ClusterError(RuntimeError):
    """The local cluster could not be created, started or reached; the message says what to do."""


@dataclass(frozen=True)
class LocalCluster:
    """A PostgreSQL cluster under `state_dir`: pgdata/, run/ (socket), postgres.log."""

    state_dir: Path
    port: int = DEFAULTS.pg_port
    bin_dir: Path = field(default_factory=lambda: Path(DEFAULTS.pg_bin))
    sidecar_address: str = DEFAULT_SIDECAR_ADDRESS
    """Written into the cluster's configuration as laser.sidecar_address."""

    @classmethod
    def default(cls) -> LocalCluster:
        """The embedded default, as `LocalSettings` (and so the LASER_* variables) describe it."""
        settings = LocalSettings.from_env()
        return cls(default_state_dir(settings), settings.pg_port, Path(settings.pg_bin),
                   sidecar_address=settings.sidecar_address)

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        preferred = self.state_dir / "run"
        if len(str(preferred)) <= _SOCKET_PATH_MAX - 20:
            return preferred
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        return Path("/tmp") / f"laser-{digest}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        user = user or ("postgres" if _is_root() else _server_user())
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user}"

    def sidecar_dsn(self) -> str:
        """Conninfo for the sidecar's own role, without a database name."""
        return f"host={self.socket_dir} port={self.port} user={SIDECAR_ROLE}"

    # -- running commands as the server's OS user -------------------------------------------
    def _as_server(self, args: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        command = (["runuser", "-u", "postgres", "--"] if _is_root() else []) + args
        return subprocess.run(command, text=True, capture_output=True, input=input)

    def _own(self, path: Path, mode: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(path, "postgres", "postgres")
        path.chmod(mode)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialized:
            return False
        return self._as_server([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)]).returncode == 0

    def init(self) -> None:
        if self.initialized:
            return
        if not (self.bin_dir / "initdb").exists():
            raise ClusterError(f"PostgreSQL 15 server binaries not found in {self.bin_dir}; "
                               "install them with: apt-get install postgresql-15")
        self._own(self.state_dir, 0o755)
        self._own(self.data_dir, 0o700)
        done = self._as_server([
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres" if _is_root() else _server_user(),
            "--auth-local=trust", "--auth-host=reject", "--encoding=UTF8", "--locale=C.UTF-8",
        ])
        if done.returncode != 0:
            raise ClusterError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write(
                "\n# --- LASER embedded cluster ---\n"
                "listen_addresses = ''\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                f"shared_preload_libraries = '{self._preload()}'\n"
                "pg_stat_statements.track = all\n"
                "shared_buffers = 512MB\n"
                "max_connections = 60\n"
                f"laser.sidecar_address = '{self.sidecar_address}'\n"
                "laser.timeout_ms = 300000\n"
            )
        self.ensure_advisor_settings()

    def _preload(self) -> str:
        """pg_stat_statements, and pg_cron when its package is installed (laser.schedule() uses it)."""
        return "pg_stat_statements,pg_cron" if self.pg_cron_installed() else "pg_stat_statements"

    def pg_cron_installed(self) -> bool:
        """Debian's postgresql-15-cron is installed beside these server binaries."""
        return (self.bin_dir.parent / "lib" / "pg_cron.so").exists()

    def ensure_advisor_settings(self) -> None:
        """Where laser.capture() samples parameters: this cluster's log, with slow statements in it.

        Appended to postgresql.conf once (an existing cluster gets them on its next `laser db up`);
        a value the user set in postgresql.auto.conf (ALTER SYSTEM) still wins.
        """
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        if "# --- LASER advisor ---" in text:
            return
        with conf.open("a") as handle:
            handle.write(
                "\n# --- LASER advisor ---\n"
                "# slow statements, with their parameters, for laser.capture() to sample\n"
                "log_min_duration_statement = 20\n"
                f"laser.log_file = '{self.log_file}'\n"
                "# pg_cron (when preloaded): jobs in the demo database, run by background workers (no TCP here)\n"
                "cron.database_name = 'laser_demo'\n"
                "cron.use_background_workers = on\n"
                "max_worker_processes = 16\n"
            )
        if self.running():
            self._as_server([str(self.bin_dir / "pg_ctl"), "reload", "-D", str(self.data_dir)])

    def start(self, timeout_s: float = 60.0) -> None:
        self.init()
        if self.running():
            return
        self._own(self.socket_dir, 0o700)
        if _is_root() and not self.log_file.exists():
            self.log_file.touch()
            shutil.chown(self.log_file, "postgres", "postgres")
        done = self._as_server([
            str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
            "-w", "-t", str(int(timeout_s)),
        ])
        if done.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise ClusterError(f"the cluster did not start:\n{done.stdout}\n{done.stderr}\n{tail}")

    def stop(self) -> None:
        if self.running():
            done = self._as_server([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"])
            if done.returncode != 0:
                raise ClusterError(f"pg_ctl stop failed: {done.stderr}")

    def psql(self, *args: str, dbname: str = "postgres", user: str | None = None,
             check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run psql against this cluster (as the server user when root)."""
        command = [str(self.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-q", self.dsn(dbname, user), *args]
        done = self._as_server(command, input=stdin)
        if check and done.returncode != 0:
            raise ClusterError(f"psql {' '.join(args)} failed:\n{done.stderr}")
        return done

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._as_server([str(self.bin_dir / "pg_isready"), "-h", str(self.socket_dir),
                                "-p", str(self.port)]).returncode == 0:
                return
            time.sleep(0.2)
        raise ClusterError("the cluster is not accepting connections")

    def ensure_sidecar_role(self) -> None:
        """The sidecar's own login role: no data privileges, read-only by default, bounded statements.

        The sidecar verifies by logging in as each caller (trust on this cluster's socket, which
        only root and the server's OS user can reach); this role serves its own connections and
        the `set_role` mode, where each caller role must be granted to it.
        """
        self.ensure_login_role(SIDECAR_ROLE)
        role = sql.Identifier(SIDECAR_ROLE)
        for statement in ("ALTER ROLE {} LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS",
                          "ALTER ROLE {} SET default_transaction_read_only = on",
                          "ALTER ROLE {} SET statement_timeout = '300s'"):
            self.execute(sql.SQL(statement).format(role))

    def execute(self, statement: sql.Composable, dbname: str = "postgres", user: str | None = None) -> str:
        """Run one statement composed with psycopg.sql (identifiers and literals quoted) through psql;
        its output, unaligned and without headers."""
        return self.psql("-tAc", statement.as_string(None), dbname=dbname, user=user).stdout.strip()

    def ensure_login_role(self, name: str) -> None:
        """A role that can log in (created when missing; an existing one is left as it is)."""
        exists = sql.SQL("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {}").format(sql.Literal(name))
        if not self.execute(exists):
            self.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))

    def ensure_database(self, name: str, owner: str | None = None) -> None:
        """A database (created when missing), owned by `owner` when given."""
        exists = sql.SQL("SELECT 1 FROM pg_catalog.pg_database WHERE datname = {}").format(sql.Literal(name))
        if not self.execute(exists):
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if owner:
                create = create + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            self.execute(create)


def install_extension(cluster: LocalCluster) -> None:
    """Extension files into PostgreSQL's share directory (root-owned: sudo when not root), and the
    in-database Python package into a versioned directory the server's OS user can read."""
    configured = LocalSettings.from_env().pylib_dir
    default = (PYLIB_ROOT if _is_root() else cluster.state_dir / "pylib") / EXTENSION_VERSION
    pylib = Path(configured) if configured else default
    build = project_root() / "pg_extension" / "build.py"
    command = [sys.executable, str(build), "install", "--pylib", str(pylib),
               "--pg-config", str(cluster.bin_dir / "pg_config")]
    sharedir = subprocess.run([str(cluster.bin_dir / "pg_config"), "--sharedir"], capture_output=True,
                              text=True, check=True).stdout.strip()
    if not _is_root() and not os.access(Path(sharedir) / "extension", os.W_OK):
        command = ["sudo", *command]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        hint = "" if _is_root() else (" (installing extension files needs write access to PostgreSQL's share "
                                      "directory: run as root)")
        raise ClusterError(f"installing the extension failed{hint}:\n{done.stdout}{done.stderr}")


def bring_up(cluster: LocalCluster) -> None:
    """The cluster running, with the advisor's settings, the extension files and the sidecar's role."""
    cluster.start()
    cluster.wait_ready()
    cluster.ensure_advisor_settings()
    install_extension(cluster)
    cluster.ensure_sidecar_role()
