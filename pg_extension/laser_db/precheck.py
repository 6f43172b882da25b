"""Input checks made before anything leaves the backend: NULL, empty, too large.

The authoritative guard (one read-only statement, parsed by PostgreSQL's grammar) runs in the
sidecar; this only stops input that is not worth a round trip.
"""
from __future__ import annotations

# Same limit as the sidecar's guard (sidecar.verify.guard.MAX_QUERY_BYTES).
MAX_QUERY_BYTES = 256 * 1024


class InputError(ValueError):
    """The argument cannot be a query; the message says why."""


def precheck(query: str | None, argument: str = "query") -> str:
    """Return the query text, or raise InputError.

    >>> precheck("SELECT 1")
    'SELECT 1'
    >>> precheck(None)
    Traceback (most recent call last):
    ...
    laser_db.precheck.InputError: query is NULL; pass the text of one SELECT statement
    >>> precheck("  ")
    Traceback (most recent call last):
    ...
    laser_db.precheck.InputError: query is empty; pass the text of one SELECT statement
    """
    if query is None:
        raise InputError(f"{argument} is NULL; pass the text of one SELECT statement")
    if not query.strip():
        raise InputError(f"{argument} is empty; pass the text of one SELECT statement")
    size = len(query.encode("utf-8"))
    if size > MAX_QUERY_BYTES:
        raise InputError(f"{argument} is {size} bytes; at most {MAX_QUERY_BYTES} bytes are accepted")
    return query
