"""`laser doctor`: is this server, and its sidecar, set up for LASER? Each check says what it found and,
when something is missing, the fix; the exit status is 1 when a check failed.

The database checks read only the catalog and settings (`laser install --dsn` shows them too); the
sidecar checks ask its gRPC health service, its ModelInfo (versions, how it takes the caller's
identity), and have it verify a trivial pair as a role, which exercises the identity end to end.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import psycopg
from laser_proto import laser_pb2, laser_pb2_grpc
from psycopg import sql

from laser import daemon
from laser.config import LocalSettings
from sidecar.auth import call_metadata

OK, FAIL, WARN, INFO = "ok", "FAIL", "warn", "info"
PG_CONFIG_HINT = "/usr/lib/postgresql/15/bin/pg_config"
RELOAD = "SELECT pg_reload_conf();"


def alter_system_custom(name: str, value: str) -> str:
    """ALTER SYSTEM for a setting of the extension's own (laser.*). PostgreSQL 15 refuses one it has not
    seen in this session, hence the SET first (in psql: separate statements, outside a transaction).

    >>> print(alter_system_custom("laser.log_file", "/var/log/postgresql/postgresql-15-main.log"))
    SET laser.log_file = '/var/log/postgresql/postgresql-15-main.log'; ALTER SYSTEM SET laser.log_file = ...
    """
    quoted = "'" + value.replace("'", "''") + "'"
    return f"SET {name} = {quoted}; ALTER SYSTEM SET {name} = {quoted}; {RELOAD}"


@dataclass(frozen=True)
class Check:
    """One finding: `status` is ok, FAIL (something is missing), warn (works, but less well) or info."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Server:
    """Who the DSN logged in as, where, and the extension's version there."""

    database: str
    login_role: str
    role: str
    superuser: bool
    version_num: int
    version: str
    extension_version: str | None


def _version_key(version: str) -> tuple[int, ...]:
    """'0.10.1' -> (0, 10, 1); parts that are not numbers count as 0.

    >>> _version_key("0.3.0") < _version_key("0.10.0")
    True
    """
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def _one(conn: psycopg.Connection, query: str | sql.Composable,
         params: tuple[object, ...] = ()) -> tuple[object, ...] | None:
    return conn.execute(query, params).fetchone()  # type: ignore[arg-type]  # a str here is a literal


def connect_check(dsn: str) -> tuple[Check, psycopg.Connection | None, Server | None]:
    try:
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        return Check("connection", FAIL, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                     "check the DSN (host, port, dbname, user) and pg_hba.conf"), None, None
    row = _one(conn, """
        SELECT current_database()::text, session_user::text, current_user::text,
               (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
               current_setting('server_version_num')::int, current_setting('server_version'),
               (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'laser')""")
    assert row is not None
    server = Server(str(row[0]), str(row[1]), str(row[2]), bool(row[3]), int(str(row[4])), str(row[5]),
                    None if row[6] is None else str(row[6]))
    detail = (f"{server.role}@{server.database}, PostgreSQL {server.version}"
              + (" (superuser)" if server.superuser else ""))
    if server.superuser:
        return Check("connection", OK, detail), conn, server
    return (Check("connection", WARN, detail + ": some settings are visible to superusers only",
                  "run laser doctor with a superuser's DSN (e.g. user=postgres) to check them all"), conn, server)


def _debian_cluster(conn: psycopg.Connection) -> tuple[str, str] | None:
    """(version, name) of a cluster made by Debian's pg_createcluster (its cluster_name is "15/main")."""
    row = _one(conn, "SELECT current_setting('cluster_name')")
    found = re.fullmatch(r"(\d+)/([\w.-]+)", str(row[0]) if row else "")
    return (found.group(1), found.group(2)) if found else None


def _restart(conn: psycopg.Connection) -> str:
    cluster = _debian_cluster(conn)
    how = f"pg_ctlcluster {cluster[0]} {cluster[1]} restart" if cluster else "pg_ctl restart"
    return f"then restart PostgreSQL ({how})"


def version_check(conn: psycopg.Connection, server: Server) -> Check:
    if server.version_num // 10000 == 15:
        return Check("server version", OK, f"PostgreSQL {server.version}")
    return Check("server version", FAIL, f"PostgreSQL {server.version}; LASER is built and tested for 15",
                 "use a PostgreSQL 15 server")


def plpython_check(conn: psycopg.Connection, server: Server) -> Check:
    row = _one(conn, "SELECT installed_version FROM pg_catalog.pg_available_extensions WHERE name = 'plpython3u'")
    if row is None:
        return Check("plpython3u", FAIL, "not available on this server",
                     "install it (Debian: apt-get install postgresql-plpython3-15); "
                     "CREATE EXTENSION laser CASCADE then creates it")
    if row[0] is None:
        return Check("plpython3u", OK, "available (CREATE EXTENSION laser CASCADE creates it)")
    return Check("plpython3u", OK, f"installed ({row[0]})")


def extension_check(conn: psycopg.Connection, server: Server) -> Check:
    from laser_extension.build import VERSION  # the release this command installs

    row = _one(conn, "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'laser'")
    install = f"laser install --pg-config {PG_CONFIG_HINT} (as root, on the database server)"
    if row is None:
        return Check("laser extension", FAIL, "the extension's files are not installed on this server", install)
    available = str(row[0])
    if server.extension_version is None:
        return Check("laser extension", FAIL, f"{available} is available but not created in {server.database}",
                     "CREATE EXTENSION laser CASCADE;")
    if server.extension_version != available:
        return Check("laser extension", FAIL,
                     f"{server.extension_version} in {server.database}, but the server's files are {available}",
                     "ALTER EXTENSION laser UPDATE;")
    if available != VERSION:
        return Check("laser extension", WARN,
                     f"{available} installed; this laser command installs {VERSION}",
                     f"{install}, then ALTER EXTENSION laser UPDATE;")
    return Check("laser extension", OK, f"{available} installed in {server.database}")


def _preloaded(conn: psycopg.Connection) -> tuple[list[str], bool] | None:
    """shared_preload_libraries as a list, and whether a changed value waits for a restart; None when
    this role may not see it."""
    try:
        row = _one(conn, "SELECT setting, pending_restart FROM pg_catalog.pg_settings"
                         " WHERE name = 'shared_preload_libraries'")
        value = _one(conn, "SELECT current_setting('shared_preload_libraries')")
    except psycopg.errors.InsufficientPrivilege:
        return None
    assert row is not None and value is not None
    libraries = [name.strip().strip('"') for name in str(value[0]).split(",") if name.strip()]
    return libraries, bool(row[1])


def preload_check(conn: psycopg.Connection, server: Server) -> Check:
    found = _preloaded(conn)
    if found is None:
        return Check("pg_stat_statements preloaded", WARN, f"{server.role} may not read shared_preload_libraries",
                     "run laser doctor as a superuser or a member of pg_read_all_settings")
    libraries, pending = found
    if "pg_stat_statements" in libraries:
        return Check("pg_stat_statements preloaded", OK, f"shared_preload_libraries = '{', '.join(libraries)}'")
    wanted = ", ".join([*libraries, "pg_stat_statements"])
    waiting = " (a changed value waits for a restart)" if pending else ""
    return Check("pg_stat_statements preloaded", FAIL,
                 f"shared_preload_libraries = '{', '.join(libraries)}'{waiting}: the advisor "
                 "(laser.capture) reads pg_stat_statements",
                 f"ALTER SYSTEM SET shared_preload_libraries = '{wanted}'; {_restart(conn)}")


def statements_check(conn: psycopg.Connection, server: Server) -> Check:
    row = _one(conn, "SELECT extnamespace::regnamespace::text FROM pg_catalog.pg_extension"
                     " WHERE extname = 'pg_stat_statements'")
    if row is None:
        return Check("pg_stat_statements readable", FAIL, f"not created in {server.database}",
                     "CREATE EXTENSION pg_stat_statements;  -- in the database you CALL laser.capture() in, "
                     "once it is preloaded")
    try:
        with conn.transaction():
            count = _one(conn, sql.SQL("SELECT count(*) FROM {}.pg_stat_statements").format(
                sql.Identifier(str(row[0]))))
    except psycopg.Error as exc:
        return Check("pg_stat_statements readable", FAIL, (exc.diag.message_primary or str(exc)).strip(),
                     "preload it (shared_preload_libraries) and restart PostgreSQL")
    assert count is not None
    return Check("pg_stat_statements readable", OK, f"{count[0]} statements tracked")


def log_duration_check(conn: psycopg.Connection, server: Server) -> Check:
    row = _one(conn, "SELECT current_setting('log_min_duration_statement')")
    assert row is not None
    value = str(row[0])
    if value == "-1":
        return Check("log_min_duration_statement", WARN,
                     "-1: no statements logged, so parameters are taken from pg_stats instead of real executions",
                     f"ALTER SYSTEM SET log_min_duration_statement = 100; {RELOAD}  "
                     "-- at or below laser.capture()'s min_mean_ms")
    return Check("log_min_duration_statement", OK, f"{value}: slow statements' parameters are sampled from the log")


def log_file_check(conn: psycopg.Connection, server: Server) -> Check:
    try:
        row = _one(conn, "SELECT coalesce(pg_catalog.pg_current_logfile('stderr'),"
                         " nullif(current_setting('laser.log_file', true), ''))")
    except psycopg.errors.InsufficientPrivilege:
        return Check("server log", WARN, f"{server.role} may not ask where the server logs",
                     "run laser doctor as a superuser")
    assert row is not None
    if row[0] is None:
        cluster = _debian_cluster(conn)
        log = f"/var/log/postgresql/postgresql-{'-'.join(cluster)}.log" if cluster else None
        exists = log and _one(conn, "SELECT size FROM pg_catalog.pg_stat_file(%s, true)", (log,))
        fix = (f"{alter_system_custom('laser.log_file', log)}  -- the log pg_ctlcluster writes"
               if log and exists and exists[0] is not None else
               f"{alter_system_custom('laser.log_file', '/path/of/the/server/log')}  -- or logging_collector = on")
        return Check("server log", WARN, "no logging_collector and laser.log_file unset: the log cannot be sampled",
                     fix)
    path = str(row[0])
    try:
        with conn.transaction():
            size = _one(conn, "SELECT size FROM pg_catalog.pg_stat_file(%s, true)", (path,))
    except psycopg.Error as exc:
        return Check("server log", WARN, f"{path}: {(exc.diag.message_primary or str(exc)).strip()}",
                     "laser.capture() runs as a superuser, which may read it")
    if size is None or size[0] is None:
        return Check("server log", WARN, f"{path} does not exist or cannot be read by the server",
                     "point laser.log_file at the file the server writes its log to")
    return Check("server log", OK, f"{path}")


def cron_check(conn: psycopg.Connection, server: Server) -> Check:
    row = _one(conn, "SELECT installed_version FROM pg_catalog.pg_available_extensions WHERE name = 'pg_cron'")
    instead = ("without it, run `laser advise --dsn DSN --every 900 --revalidate-every 86400` beside the sidecar; "
               "or install postgresql-15-cron, add pg_cron to shared_preload_libraries and CREATE EXTENSION pg_cron")
    if row is None:
        return Check("pg_cron", INFO, "not installed: laser.schedule() cannot create jobs", instead)
    if row[0] is None:
        return Check("pg_cron", INFO, f"available but not created in {server.database}", instead)
    return Check("pg_cron", OK, "installed: SELECT * FROM laser.schedule('*/15 * * * *', '30 3 * * *') "
                                "creates the advisor's jobs")


def address_check(conn: psycopg.Connection, server: Server, asked: str | None) -> tuple[Check, str]:
    """The address the database calls the sidecar at, and the one to check (the asked one, if any)."""
    row = _one(conn, "SELECT current_setting('laser.sidecar_address', true)")
    configured = str(row[0]) if row is not None and row[0] else ""
    calls = configured or LocalSettings().sidecar_address
    shown = calls if configured else f"unset: the default, {calls}"
    if asked and asked != calls:
        return (Check("laser.sidecar_address", WARN, f"{shown}; the sidecar asked about is {asked}",
                      alter_system_custom("laser.sidecar_address", asked)), asked)
    return Check("laser.sidecar_address", OK, shown), calls


DATABASE_CHECKS: tuple[Callable[[psycopg.Connection, Server], Check], ...] = (
    version_check, plpython_check, extension_check, preload_check, statements_check, log_duration_check,
    log_file_check, cron_check)


def database_checks(conn: psycopg.Connection, server: Server) -> list[Check]:
    """The server's checks; one that cannot run says so instead of stopping the others."""
    found = []
    for check in DATABASE_CHECKS:
        name = check.__name__.removesuffix("_check").replace("_", " ")
        try:
            found.append(check(conn, server))
        except psycopg.Error as exc:
            found.append(Check(name, FAIL, f"could not check: {str(exc).strip()}"))
    return found


def _probe_roles(conn: psycopg.Connection, server: Server, as_role: str | None) -> tuple[str, str, bool]:
    """The (login role, role) to have the sidecar verify as, and whether that role is a superuser."""
    role = as_role or server.role
    row = _one(conn, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))
    return (as_role or server.login_role), role, bool(row and row[0])


def _granted_to(conn: psycopg.Connection, member: str) -> list[str]:
    rows = conn.execute("SELECT m.roleid::regrole::text FROM pg_catalog.pg_auth_members m"
                        " JOIN pg_catalog.pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1",
                        (member,)).fetchall()
    return [str(r[0]) for r in rows]


def sidecar_checks(address: str, conn: psycopg.Connection | None, server: Server | None,
                   as_role: str | None, timeout_s: float) -> list[Check]:
    """Health, then (when it serves) its version against the database's, then its identity handling."""
    health = daemon.health_status(address, timeout_s=min(timeout_s, 5.0))
    if health != "SERVING":
        what = "not reachable" if health == "UNREACHABLE" else f"health {health}"
        return [Check("sidecar", FAIL, f"{address}: {what}",
                      "start it: systemctl start laser-sidecar, or laser sidecar --config /etc/laser/sidecar.toml; "
                      "its log: journalctl -u laser-sidecar")]
    with grpc.insecure_channel(address) as channel:
        stub = laser_pb2_grpc.LaserStub(channel)
        info = stub.ModelInfo(laser_pb2.ModelInfoRequest(), timeout=timeout_s, metadata=_metadata())
        found = [Check("sidecar", OK, f"{address}: SERVING (backend {info.backend})")]
        if conn is None or server is None:
            return found
        found.append(_sidecar_version(info, server))
        found.append(_identity(stub, info, conn, server, as_role, timeout_s))
    return found


def _sidecar_version(info: laser_pb2.ModelInfoResponse, server: Server) -> Check:
    theirs, ours = info.extension_version, server.extension_version
    if not theirs:
        return Check("sidecar version", WARN, "the sidecar does not say which extension it goes with (older release)",
                     "upgrade it: pip install -U laser-pg, then restart it")
    if ours is None:
        return Check("sidecar version", INFO, f"the sidecar goes with extension {theirs}; none created here yet")
    if theirs == ours:
        return Check("sidecar version", OK, f"extension {ours}, sidecar for {theirs}")
    if _version_key(theirs) > _version_key(ours):
        fix = f"laser install --pg-config {PG_CONFIG_HINT}, then ALTER EXTENSION laser UPDATE;"
    else:
        fix = "upgrade the sidecar: pip install -U laser-pg, then systemctl restart laser-sidecar"
    return Check("sidecar version", FAIL, f"extension {ours} in {server.database}, sidecar for {theirs}", fix)


def _metadata() -> tuple[tuple[str, str], ...]:
    """The token a sidecar that needs one wants (LASER_SIDECAR_TOKEN or LASER_SIDECAR_TOKEN_FILE)."""
    return call_metadata(LocalSettings.from_env().token())


def _server_id(conn: psycopg.Connection) -> str:
    """The cluster's system identifier: the sidecar checks that it verifies on this very server."""
    row = conn.execute("SELECT system_identifier::text FROM pg_catalog.pg_control_system()").fetchone()
    return str(row[0]) if row else ""


def _identity(stub: laser_pb2_grpc.LaserStub, info: laser_pb2.ModelInfoResponse, conn: psycopg.Connection,
              server: Server, as_role: str | None, timeout_s: float) -> Check:
    """Have the sidecar verify a trivial pair as the role: it logs in as it (login) or SETs ROLE (set_role)."""
    name = f"sidecar identity ({info.act_as or 'unknown'})"
    login, role, superuser = _probe_roles(conn, server, as_role)
    sidecar_role = info.sidecar_role or "the sidecar's role"
    if info.act_as == "set_role":
        granted = _granted_to(conn, info.sidecar_role) if info.sidecar_role else []
        roles = f"roles granted to {sidecar_role}: {', '.join(granted) or 'none'}"
        fix = f"GRANT {role} TO {sidecar_role};  -- once per role that calls laser_rewrite"
    else:
        roles = "logs in as each caller"
        fix = (f"allow the sidecar's OS user to log in as {role} on the socket in its dsn: pg_hba.conf "
               "`local all all peer map=laser` and a pg_ident.conf line `laser <sidecar OS user> "
               f"{role}`, then {RELOAD} Or set act_as = \"set_role\" in its configuration")
    if superuser and not as_role:
        return Check(name, INFO, f"{roles}; not tried as superuser {role}",
                     "check an application role: laser doctor --dsn DSN --as-role ROLE")
    request = laser_pb2.VerifyRequest(original="SELECT 1 AS laser_doctor", candidate="SELECT 2 AS laser_doctor",
                                      target=laser_pb2.Target(database=server.database, role=role, login_role=login,
                                                              server_id=_server_id(conn)))
    try:
        stub.Verify(request, timeout=timeout_s, metadata=_metadata())
    except grpc.RpcError as exc:
        detail = f"as {role}: {exc.details()}"
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return Check(name, FAIL, detail, "the sidecar's dsn must reach this server (host, port)")
        return Check(name, FAIL, detail, fix)
    return Check(name, OK, f"{roles}; verified as {role}")


def render(checks: list[Check]) -> str:
    """One line per check, its fix indented under it.

    >>> print(render([Check("sidecar", "FAIL", "127.0.0.1:1: not reachable", "start it")]))
      FAIL  sidecar  127.0.0.1:1: not reachable
                     fix: start it
    """
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"  {check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status != OK:
            lines.append(f"  {'':<4}  {'':<{width}}  fix: {check.fix}")
    return "\n".join(lines)


def run(dsn: str, sidecar: str | None, as_role: str | None = None, timeout_s: float = 30.0) -> list[Check]:
    """Every check, in order: the connection, the server, the sidecar."""
    first, conn, server = connect_check(dsn)
    checks = [first]
    try:
        address = sidecar or LocalSettings.from_env().sidecar_address
        if conn is not None and server is not None:
            checks += database_checks(conn, server)
            found, address = address_check(conn, server, sidecar)
            checks.append(found)
        checks += sidecar_checks(address, conn, server, as_role, timeout_s)
    finally:
        if conn is not None:
            conn.close()
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", required=True,
                        help="libpq conninfo of a database that uses LASER, best as a superuser (user=postgres)")
    parser.add_argument("--sidecar", help="the sidecar's address (default: the database's laser.sidecar_address)")
    parser.add_argument("--as-role", help="the role to have the sidecar verify as (default: the DSN's role; "
                                          "name an application role when the DSN is a superuser's)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="for each call to the sidecar")


def main(args: argparse.Namespace) -> int:
    checks = run(args.dsn, args.sidecar, args.as_role, args.timeout_s)
    print(render(checks))
    failed = [c for c in checks if c.status == FAIL]
    warned = [c for c in checks if c.status == WARN]
    print()
    print(f"{len(failed)} check(s) failed, {len(warned)} warning(s)" if failed or warned else "all checks passed")
    sys.stdout.flush()
    return 1 if failed else 0
