"""Why a rule that recognised its pattern did not fire, for the evidence.

A DBA who sees ``NOT IN (SELECT …)`` left alone wants to know that the subquery's column may be NULL,
not to guess. A rule calls :func:`decline` where it recognised what it targets and refuses; the
search collects the reasons of rules that did not fire on the original (:func:`collecting`), and the
rules backend reports them as ``search.declined`` ({rule: reason}). Outside :func:`collecting`,
:func:`decline` does nothing, so the rules stay plain functions.

>>> with collecting() as reasons:
...     decline("x may be NULL")
>>> reasons
['x may be NULL']
>>> decline("nobody listens")  # outside collecting(): ignored
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_REASONS: ContextVar[list[str] | None] = ContextVar("laser_rule_declines", default=None)


def decline(reason: str) -> None:
    """Note why the running rule leaves a pattern it recognised alone."""
    reasons = _REASONS.get()
    if reasons is not None and reason not in reasons:
        reasons.append(reason)


@contextmanager
def collecting() -> Iterator[list[str]]:
    """The reasons :func:`decline` notes while the block runs."""
    reasons: list[str] = []
    token = _REASONS.set(reasons)
    try:
        yield reasons
    finally:
        _REASONS.reset(token)
