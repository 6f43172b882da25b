"""A request's cancellation: set when its caller goes away (hung up, deadline passed, its database
session cancelled); the pipeline stops between steps, and the statements it runs are interrupted."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg


class Cancellation:
    """Set once from the server's event loop, read from the worker thread that verifies."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @contextlib.contextmanager
    def watching(self, connection: psycopg.Connection[Any]) -> Iterator[None]:
        """While the body runs, :meth:`cancel` interrupts the statement running on `connection`."""
        with self._lock:
            self._connections.append(connection)
        try:
            if self.cancelled:
                self.interrupt()
            yield
        finally:
            with self._lock:
                self._connections.remove(connection)

    def cancel(self) -> None:
        """Stop the request: no new step starts, and the running statement is interrupted."""
        self._event.set()
        self.interrupt()

    def interrupt(self) -> None:
        """Ask the server to cancel whatever each watched connection runs (a no-op on an idle one)."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(psycopg.Error):
                connection.cancel_safe(timeout=2.0)
