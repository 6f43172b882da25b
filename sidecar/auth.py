"""Who may call the sidecar: the shared-secret token every call must carry ("authorization: Bearer
TOKEN" metadata) when one is configured, checked by a server interceptor (where the sidecar may
listen without one: sidecar.exposure)."""
from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from sidecar.exposure import TokenError, read_token_file

METADATA_KEY = "authorization"
SCHEME = "Bearer "
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
"""Health checks carry no identity and reveal nothing: service managers and probes call them bare."""


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
