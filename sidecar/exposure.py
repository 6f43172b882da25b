"""Where the sidecar may listen without a token, and reading the token file (no gRPC here: the
configuration imports it).

The sidecar trusts the database, role and server each request names, so it must only be reachable
where that trust is given: a loopback address or a Unix socket (the machine's own users, the socket
file's permissions), or any address when every call proves it knows the token (sidecar.auth).
"""
from __future__ import annotations

import ipaddress
from pathlib import Path


def listen_is_local(listen: str) -> bool:
    """Whether `listen` is reachable only from this machine: a Unix socket or a loopback address.

    >>> [listen_is_local(a) for a in ("127.0.0.1:50551", "[::1]:1", "localhost:1", "unix:/run/laser.sock")]
    [True, True, True, True]
    >>> [listen_is_local(a) for a in ("0.0.0.0:50551", "[::]:1", ":50551", "10.0.0.5:1", "db1:50551")]
    [False, False, False, False, False]
    """
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = listen.rsplit(":", 1)[0] if ":" in listen else listen
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name (which may resolve anywhere) or an empty host (every interface)
        return False


class TokenError(ValueError):
    """The configured token cannot be used (an unreadable or empty token file)."""


def read_token_file(path: str) -> str:
    """The token in `path` (its text, surrounding whitespace removed); TokenError if unreadable or empty."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TokenError(f"the token file {path} is not text") from None
    if not token:
        raise TokenError(f"the token file {path} is empty")
    return token
