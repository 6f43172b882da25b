"""Read-only execution driver: every statement runs as the caller, in a read-only transaction, rolled back.

This is the only module of the verifier that waits on the database; the checks that decide
(equivalence, timing, plans) are pure functions over what it returns.
"""
from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg import errors, sql
from psycopg.pq.abc import PGresult

from sidecar.verify.equivalence import KEEP_ROWS, ResultDigest

Query = str | sql.Composable
"""A statement to run: an admitted statement's text, or a composition of psycopg.sql parts."""

APPLICATION_NAME = "laser-verifier"
STREAM_CHUNK_ROWS = 1_000
"""Rows per chunk while a result streams in (libpq's chunked-rows mode)."""
_PREPARED = "laser_prepared"
"""The name under which a statement is PREPAREd to describe it or to EXPLAIN its generic plan."""
MARKER = "/* laser-verifier */ "
"""Leads every query the verifier times or runs on instances, so that pg_stat_statements entries it
creates (e.g. a parameterized statement run with literal values) are recognisable and never
captured as the application's own slow statements."""


class SessionError(Exception):
    """The session cannot run statements as asked (connection lost, role not assumable)."""


class DatabaseUnavailable(SessionError):
    """The database cannot be reached or the connection broke."""


class PermissionRefused(SessionError):
    """The sidecar may not act as the caller, or the caller may not read a relation."""


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int


@dataclass(frozen=True)
class StatementError:
    """A statement failed; classified by exception class, never by message text."""

    sqlstate: str
    kind: str
    message: str


@dataclass(frozen=True)
class Run:
    """One execution of one statement."""

    elapsed_ms: float
    rows: list[tuple[Any, ...]] | None = None
    """Every row, when fetched and no more than the session's `keep_rows`; else None (see `digest`)."""
    columns: tuple[Column, ...] = ()
    timed_out: bool = False
    too_many_rows: bool = False
    error: StatementError | None = None
    digest: ResultDigest | None = None
    """The fetched result as it streamed by (count, hashes, and the rows while few enough)."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and not self.too_many_rows

    @property
    def row_count(self) -> int | None:
        """How many rows it returned (None when not fetched, or it failed)."""
        if self.digest is not None:
            return self.digest.count
        return len(self.rows) if self.rows is not None else None

    @property
    def result(self) -> ResultDigest:
        """The result as a digest, for `equivalence.compare_digests`; the run must have fetched it."""
        if self.digest is not None:
            return self.digest
        if self.rows is None:
            raise ValueError("this run did not fetch its result")
        return ResultDigest.of(self.rows)


class ReadOnlySession:
    """Runs statements on one connection as `role`, each in a READ ONLY transaction that is rolled back.

    The connection itself is opened with `default_transaction_read_only=on` and a
    `statement_timeout`, so even a statement that escaped the guard could not write.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        role: str | None,
        statement_timeout_ms: int = 30_000,
        lock_timeout_ms: int = 2_000,
        max_rows: int = 1_000_000,
        keep_rows: int = KEEP_ROWS,
    ) -> None:
        conn.autocommit = True  # we issue BEGIN / ROLLBACK ourselves
        self._conn = conn
        self.role = role or None
        self.statement_timeout_ms = statement_timeout_ms
        self.lock_timeout_ms = lock_timeout_ms
        self.max_rows = max_rows
        """A result with more rows is refused (`Run.too_many_rows`) as soon as the row past it arrives."""
        self.keep_rows = keep_rows
        """A fetched result of at most this many rows is kept whole; a larger one only as a digest."""

    @classmethod
    def connect(
        cls,
        dsn: str,
        role: str | None,
        statement_timeout_ms: int = 30_000,
        connect_timeout_s: int = 5,
        **kwargs: Any,
    ) -> ReadOnlySession:
        """Open a read-only connection; DatabaseUnavailable if the server cannot be reached."""
        # client_connection_check_interval: should the sidecar die mid-query, the backend notices
        # within a second and rolls back, instead of running on to the statement timeout.
        options = (
            f"-c default_transaction_read_only=on -c statement_timeout={int(statement_timeout_ms)}"
            " -c client_connection_check_interval=1000"
        )
        try:
            conn = psycopg.connect(
                dsn,
                options=options,
                application_name=APPLICATION_NAME,
                connect_timeout=connect_timeout_s,
            )
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to the database: {exc}".strip()) from None
        session = cls(conn, role, statement_timeout_ms=statement_timeout_ms, **kwargs)
        try:
            session.resolve_role()
        except BaseException:
            session.close()
            raise
        return session

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The underlying connection (read-only by default), for catalog look-ups."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReadOnlySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, timeout_ms: int | None = None) -> Iterator[psycopg.Cursor[Any]]:
        """A REPEATABLE READ, READ ONLY transaction as the caller's role; always rolled back."""
        with self._transaction("READ ONLY", timeout_ms) as cur:
            yield cur

    @contextmanager
    def scratch(self, timeout_ms: int | None = None) -> Iterator[Scratch]:
        """A transaction for work on private temporary copies, as the caller's role; always rolled back.

        It starts READ WRITE only so that `Scratch.create_copy` can create temporary tables; nothing
        else runs until `Scratch.seal()` makes it READ ONLY, after which only temporary tables can be
        written. Raises PermissionRefused when the caller may not create temporary tables.
        """
        with self._transaction("READ WRITE", timeout_ms) as cur:
            yield Scratch(cur, self)

    @contextmanager
    def _transaction(self, access: str, timeout_ms: int | None) -> Iterator[psycopg.Cursor[Any]]:
        cur = self._conn.cursor()
        try:
            try:
                cur.execute(sql.SQL("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ {}").format(sql.SQL(access)))
                if self.role:
                    cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.role)))
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true),"
                    " set_config('lock_timeout', %s, true)",
                    (str(int(timeout_ms or self.statement_timeout_ms)), str(self.lock_timeout_ms)),
                )
            except errors.InsufficientPrivilege:
                raise PermissionRefused(self._role_refusal()) from None
            except errors.InvalidParameterValue:
                raise PermissionRefused(f"role {self.role!r} does not exist") from None
            except errors.ReadOnlySqlTransaction as exc:  # READ WRITE on a standby
                raise SessionError(f"no writable transaction here: {_message(exc)}") from None
            yield cur
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"the database connection failed: {exc}".strip()) from None
        finally:
            if not self._conn.closed and not self._conn.broken:
                self._conn.execute("ROLLBACK")
            cur.close()

    def resolve_role(self) -> None:
        """Raise PermissionRefused now if the session cannot act as the caller's role.

        The role is assumed with SET ROLE, so its privileges and row-level security apply.
        """
        if not self.role:
            return
        row = self._conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (self.role,)).fetchone()
        if row is None:
            raise PermissionRefused(f"role {self.role!r} does not exist")
        with self.transaction():
            pass

    def run(self, statement: Query, timeout_ms: int | None = None, fetch: bool = True) -> Run:
        """Execute `statement` once and return its rows (or its error), timing the round trip."""
        with self.transaction(timeout_ms) as cur:
            return self._timed(cur, statement, fetch)

    def run_many(self, statements: list[Query], timeout_ms: int | None = None) -> list[Run]:
        """Execute statements in order, in ONE snapshot, so their results are comparable.

        Each statement runs under a savepoint: a failure of one does not abort the others.
        """
        runs: list[Run] = []
        with self.transaction(timeout_ms) as cur:
            for i, statement in enumerate(statements):
                cur.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(f"s{i}")))
                run = self._timed(cur, statement, fetch=True)
                if not run.ok:
                    cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(f"s{i}")))
                runs.append(run)
        return runs

    def explain(self, statement: str, timeout_ms: int | None = None) -> tuple[dict[str, Any] | None, Run]:
        """EXPLAIN (FORMAT JSON) without executing; returns (plan, run) where run carries any error."""
        run = self.run(sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(statement), timeout_ms)
        if not run.ok or not run.rows:
            return None, run
        document = run.rows[0][0]
        return cast(dict[str, Any], document[0]["Plan"]), run

    def describe(self, statement: str, timeout_ms: int | None = None) -> tuple[tuple[Column, ...], Run]:
        """The result columns (names and type oids) of `statement`, learned by preparing it, not by
        running it; returns (columns, run) where run carries any error."""
        start = time.perf_counter()
        with self._prepared(statement, timeout_ms) as prepared:
            if isinstance(prepared, Run):
                return (), prepared
            encoding = self._conn.info.encoding
            columns = tuple(Column((prepared.fname(i) or b"").decode(encoding), prepared.ftype(i))
                            for i in range(prepared.nfields))
        return columns, Run(elapsed_ms=(time.perf_counter() - start) * 1000.0, columns=columns)

    def explain_generic(self, statement: str, timeout_ms: int | None = None) -> tuple[dict[str, Any] | None, Run, int]:
        """EXPLAIN the generic plan of a statement with `$n` parameters; returns (plan, run, parameter count).

        PREPARE leaves the parameter types to PostgreSQL's inference; with plan_cache_mode =
        force_generic_plan, EXECUTE with NULLs shows the plan that serves every value.
        """
        start = time.perf_counter()
        with self._prepared(statement, timeout_ms) as prepared:
            if isinstance(prepared, Run):
                return None, prepared, 0
            count = prepared.nparams
            cur = self._conn.cursor()
            try:
                cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}{}").format(
                    sql.Identifier(_PREPARED),
                    sql.SQL("({})".format(", ".join(["NULL"] * count)) if count else "")))
                row = cur.fetchone()
            except errors.QueryCanceled:
                return None, Run(elapsed_ms=(time.perf_counter() - start) * 1000.0, timed_out=True), 0
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                return None, _failed(start, exc), 0
            finally:
                cur.close()
        assert row is not None
        run = Run(elapsed_ms=(time.perf_counter() - start) * 1000.0, rows=[row])
        return cast(dict[str, Any], row[0][0]["Plan"]), run, count

    @contextmanager
    def _prepared(self, statement: str, timeout_ms: int | None) -> Iterator[PGresult | Run]:
        """`statement` PREPAREd (never executed) in a read-only transaction as the caller, and its
        description; a Run with the error (or the timeout) instead when PostgreSQL refuses it."""
        start = time.perf_counter()
        try:
            with self.transaction(timeout_ms) as cur:
                try:
                    cur.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(_PREPARED))
                                + sql.SQL(statement))
                except errors.QueryCanceled:
                    yield Run(elapsed_ms=(time.perf_counter() - start) * 1000.0, timed_out=True)
                    return
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    yield _failed(start, exc)
                    return
                yield self._conn.pgconn.describe_prepared(_PREPARED.encode())
        finally:
            alive = not self._conn.closed and not self._conn.broken
            if alive and self._conn.execute("SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE name = %s",
                                            (_PREPARED,)).fetchone():
                self._conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(_PREPARED)))

    def _timed(self, cur: psycopg.Cursor[Any], statement: Query, fetch: bool) -> Run:
        """Run `statement`, streaming its rows in chunks: memory stays bounded by `keep_rows` and a
        chunk whatever the result's size. `fetch`: keep a digest of the result (else rows are only
        counted, as a timed run needs). A result past `max_rows` is cut off there (the query is
        cancelled; the transaction or savepoint must be rolled back)."""
        start = time.perf_counter()
        composed = sql.SQL(MARKER) + (sql.SQL(statement) if isinstance(statement, str) else statement)
        digest = ResultDigest(keep=self.keep_rows) if fetch else None
        count = 0
        too_many = False
        try:
            # Extended protocol (stream() always uses it): the text goes as one prepared statement,
            # so a second statement hidden in it is rejected by the server as well as by the guard.
            rows = cast(Generator[Any, None, None], cur.stream(cast(Any, composed), size=STREAM_CHUNK_ROWS))
            try:
                for row in rows:
                    count += 1
                    if count > self.max_rows:
                        too_many = True
                        break
                    if digest is not None:
                        digest.add(row)
            finally:
                rows.close()  # an early stop cancels the query and drains what was already sent
            elapsed = (time.perf_counter() - start) * 1000.0
        except errors.QueryCanceled:
            return Run(elapsed_ms=(time.perf_counter() - start) * 1000.0, timed_out=True)
        except psycopg.OperationalError as exc:
            if self._conn.broken:
                raise DatabaseUnavailable(f"the database connection failed: {exc}".strip()) from None
            return _failed(start, exc)
        except psycopg.Error as exc:
            return _failed(start, exc)
        if cur.description is not None:
            columns = tuple(Column(d.name, d.type_code) for d in cur.description)
        else:  # stream() keeps no description of an empty result: ask for the statement's
            columns = self._unnamed_columns()
        if too_many:
            return Run(elapsed_ms=elapsed, columns=columns, too_many_rows=True)
        return Run(elapsed_ms=elapsed, rows=digest.rows if digest is not None else None, columns=columns,
                   digest=digest)

    def _unnamed_columns(self) -> tuple[Column, ...]:
        """The result columns of the statement just run (libpq's unnamed prepared statement)."""
        described = self._conn.pgconn.describe_prepared(b"")
        encoding = self._conn.info.encoding
        return tuple(Column((described.fname(i) or b"").decode(encoding), described.ftype(i))
                     for i in range(described.nfields))

    def _role_refusal(self) -> str:
        user = self._conn.info.user
        return (
            f"the sidecar's database role {user!r} may not act as role {self.role!r}; "
            f"a superuser can allow it with: GRANT {self.role} TO {user}"
        )


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return (diag.message_primary or str(exc)).strip()


def _failed(start: float, exc: psycopg.Error) -> Run:
    return Run(
        elapsed_ms=(time.perf_counter() - start) * 1000.0,
        error=StatementError(
            sqlstate=exc.sqlstate or "",
            kind=type(exc).__name__,
            message=_message(exc),
        ),
    )


class Scratch:
    """The inside of `ReadOnlySession.scratch()`: temporary copies, then read-only work on them."""

    def __init__(self, cur: psycopg.Cursor[Any], session: ReadOnlySession) -> None:
        self._cur = cur
        self._session = session
        self._sealed = False
        self._savepoints = 0

    @property
    def sealed(self) -> bool:
        return self._sealed

    @property
    def broken(self) -> bool:
        """The connection is gone: nothing more can run in this transaction."""
        return self._session.connection.closed or self._session.connection.broken

    def create_copy(self, source: sql.Composable, name: str) -> None:
        """CREATE TEMPORARY TABLE `name` shaped like `source`: columns, defaults, generated
        columns, NOT NULL, CHECK, primary key, unique and exclusion constraints (not its rows,
        not its foreign keys). The only statement allowed before `seal()`."""
        if self._sealed:
            raise SessionError("temporary copies are created before the transaction is sealed")
        statement = sql.SQL(
            "CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
            " INCLUDING INDEXES INCLUDING GENERATED) ON COMMIT DROP"
        ).format(sql.Identifier(name), source)
        try:
            with self.savepoint():
                self._cur.execute(statement)
        except errors.InsufficientPrivilege as exc:
            raise PermissionRefused(_message(exc)) from None

    def seal(self) -> None:
        """From here on the transaction is READ ONLY: only temporary tables can still be written."""
        self._cur.execute("SET LOCAL transaction_read_only = on")
        self._sealed = True

    def execute(self, statement: sql.Composable | str, params: Sequence[Any] | None = None,
                timeout_ms: int | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (sealed only) and return its rows; psycopg errors propagate."""
        if not self._sealed:
            raise SessionError("seal() the scratch transaction before running statements in it")
        if timeout_ms is not None:
            self._cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_ms)),))
        marked = sql.SQL(MARKER) + (sql.SQL(statement) if isinstance(statement, str) else statement)
        self._cur.execute(cast(Any, marked), params, prepare=False)
        return self._cur.fetchall() if self._cur.description is not None else []

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo everything inside on an exception (which propagates)."""
        self._savepoints += 1
        name = sql.Identifier(f"laser_sp{self._savepoints}")
        self._cur.execute(sql.SQL("SAVEPOINT {}").format(name))
        try:
            yield
        except BaseException:
            if not self._session.connection.broken:
                self._cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
            raise
        self._cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))

    def run(self, statement: str, timeout_ms: int) -> Run:
        """Execute a query under a savepoint and a timeout, like `ReadOnlySession.run`."""
        if not self._sealed:
            raise SessionError("seal() the scratch transaction before running queries in it")
        self._savepoints += 1
        name = sql.Identifier(f"laser_sp{self._savepoints}")
        self._cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_ms)),))
        self._cur.execute(sql.SQL("SAVEPOINT {}").format(name))
        run = self._session._timed(self._cur, statement, fetch=True)
        if not run.ok:
            self._cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(name))
        else:
            self._cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(name))
        return run
