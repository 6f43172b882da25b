"""Who may call the sidecar: where it may listen without a token, and the shared-secret token every
call must carry ("authorization: Bearer TOKEN" metadata) when one is configured.

The sidecar trusts the database, role and server each request names, so it must only be reachable
where that trust is given: a loopback address or a Unix socket (the machine's own users, the socket
file's permissions), or any address when every call proves it knows the token.
"""
from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

METADATA_KEY = "authorization"
SCHEME = "Bearer "
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
"""Health checks carry no identity and reveal nothing: service managers and probes call them bare."""


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


class TokenCheck:
    """The token a call must present: `token` itself, or the content of `token_file`, read on every
    call so that a rotated file applies at once (and an unreadable one refuses every call)."""

    def __init__(self, token: str = "", token_file: str = "") -> None:
        if bool(token) == bool(token_file):
            raise TokenError("give exactly one of a token or a token file")
        self._token = token
        self._file = token_file
        self.expected()  # fail at start, not on the first call

    def expected(self) -> str:
        return self._token or read_token_file(self._file)

    def refusal(self, presented: str) -> str | None:
        """None when `presented` (the authorization metadata) carries the token; otherwise why not."""
        try:
            expected = self.expected()
        except TokenError as exc:
            return f"the sidecar cannot check tokens: {exc}"
        if not presented:
            return "this sidecar needs a token: send it as metadata \"authorization: Bearer TOKEN\""
        given = presented[len(SCHEME):] if presented.startswith(SCHEME) else presented
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return "the token this call carries is not the sidecar's token"
        return None


def _refuse(reason: str) -> grpc.RpcMethodHandler:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    return grpc.unary_unary_rpc_method_handler(refuse)


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Refuses (UNAUTHENTICATED) every call but a health check that does not carry the token."""

    def __init__(self, check: TokenCheck) -> None:
        self.check = check

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(EXEMPT_PREFIXES):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        reason = self.check.refusal(str(metadata.get(METADATA_KEY, "")))
        if reason is None:
            return await continuation(handler_call_details)
        return _refuse(reason)


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The metadata a client sends with each call (none without a token)."""
    return ((METADATA_KEY, SCHEME + token),) if token else ()
