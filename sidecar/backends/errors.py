"""The error a model backend raises when it cannot serve: a missing package, directory or model."""

from __future__ import annotations


class BackendError(Exception):
    """A backend cannot be constructed or cannot serve; the message says what to fix.

    >>> str(BackendError("no config.json in /models/x"))
    'no config.json in /models/x'
    """
