"""Read-only execution driver: every statement runs as the caller, in a read-only transaction, rolled back.

This is the only module of the verifier that waits on the database; the checks that decide
(equivalence, timing, plans) are pure functions over what it returns.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg import errors, sql

APPLICATION_NAME = "laser-verifier"


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
    columns: tuple[Column, ...] = ()
    timed_out: bool = False
    too_many_rows: bool = False
    error: StatementError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and not self.too_many_rows


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
    ) -> None:
        conn.autocommit = True  # we issue BEGIN / ROLLBACK ourselves
        self._conn = conn
        self.role = role or None
        self.statement_timeout_ms = statement_timeout_ms
        self.lock_timeout_ms = lock_timeout_ms
        self.max_rows = max_rows

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
        options = (
            f"-c default_transaction_read_only=on -c statement_timeout={int(statement_timeout_ms)}"
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
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
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

    def run(self, statement: str, timeout_ms: int | None = None, fetch: bool = True) -> Run:
        """Execute `statement` once and return its rows (or its error), timing the round trip."""
        with self.transaction(timeout_ms) as cur:
            return self._timed(cur, statement, fetch)

    def run_many(self, statements: list[str], timeout_ms: int | None = None) -> list[Run]:
        """Execute statements in order, in ONE snapshot, so their results are comparable.

        Each statement runs under a savepoint: a failure of one does not abort the others.
        """
        runs: list[Run] = []
        with self.transaction(timeout_ms) as cur:
            for i, statement in enumerate(statements):
                cur.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(f"s{i}")))
                run = self._timed(cur, statement, fetch=True)
                if run.error is not None or run.timed_out:
                    cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(f"s{i}")))
                runs.append(run)
        return runs

    def explain(self, statement: str, timeout_ms: int | None = None) -> tuple[dict[str, Any] | None, Run]:
        """EXPLAIN (FORMAT JSON) without executing; returns (plan, run) where run carries any error."""
        run = self.run("EXPLAIN (FORMAT JSON) " + statement, timeout_ms)
        if not run.ok or not run.rows:
            return None, run
        document = run.rows[0][0]
        return cast(dict[str, Any], document[0]["Plan"]), run

    def _timed(self, cur: psycopg.Cursor[Any], statement: str, fetch: bool) -> Run:
        start = time.perf_counter()
        try:
            # Extended protocol: psycopg sends the text as one prepared statement, so a second
            # statement hidden in it is rejected by the server as well as by the guard.
            cur.execute(cast(Any, statement), prepare=False)
            too_many = cur.rowcount > self.max_rows
            rows = cur.fetchall() if (fetch and cur.description is not None and not too_many) else None
            elapsed = (time.perf_counter() - start) * 1000.0
        except errors.QueryCanceled:
            return Run(elapsed_ms=(time.perf_counter() - start) * 1000.0, timed_out=True)
        except psycopg.OperationalError as exc:
            if self._conn.broken:
                raise DatabaseUnavailable(f"the database connection failed: {exc}".strip()) from None
            return _failed(start, exc)
        except psycopg.Error as exc:
            return _failed(start, exc)
        columns = tuple(Column(d.name, d.type_code) for d in (cur.description or ()))
        return Run(elapsed_ms=elapsed, rows=rows, columns=columns, too_many_rows=too_many)

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
