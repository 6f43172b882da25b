"""gRPC client for the sidecar's laser.v1 service, with one cached channel per address."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from laser_proto import laser_pb2, laser_pb2_grpc

_channels: dict[str, grpc.Channel] = {}


@dataclass(frozen=True)
class SidecarError(Exception):
    """A call failed; `sqlstate` is what the database error should carry."""

    message: str
    sqlstate: str
    hint: str = ""

    def __str__(self) -> str:
        return self.message


# gRPC status -> (SQLSTATE, how to say it). Classified by code, never by message text.
_STATUS_SQLSTATE = {
    grpc.StatusCode.INVALID_ARGUMENT: "22023",   # invalid_parameter_value
    grpc.StatusCode.PERMISSION_DENIED: "42501",  # insufficient_privilege
    grpc.StatusCode.UNAVAILABLE: "08006",        # connection_failure
    grpc.StatusCode.DEADLINE_EXCEEDED: "57014",  # query_canceled
    grpc.StatusCode.RESOURCE_EXHAUSTED: "53000",  # insufficient_resources: class 53 is retryable (transient)
    grpc.StatusCode.FAILED_PRECONDITION: "55000",  # object_not_in_prerequisite_state: another server's sidecar
    grpc.StatusCode.UNAUTHENTICATED: "28000",      # invalid_authorization_specification
    grpc.StatusCode.CANCELLED: "57014",            # query_canceled
}

POLL_S = 0.1
"""While waiting for the sidecar, the calling session is checked for a cancel this often."""

Interrupts = Callable[[], None]
"""Raises when the calling statement has been cancelled (statement_timeout, pg_cancel_backend)."""


def _stub(address: str) -> laser_pb2_grpc.LaserStub:
    channel = _channels.get(address)
    if channel is None:
        channel = grpc.insecure_channel(address)
        _channels[address] = channel
    return laser_pb2_grpc.LaserStub(channel)


def _failure(exc: grpc.RpcError, address: str, timeout_ms: int) -> SidecarError:
    code = exc.code()
    detail = exc.details() or ""
    sqlstate = _STATUS_SQLSTATE.get(code, "XX000")
    if code == grpc.StatusCode.UNAVAILABLE:
        return SidecarError(
            f"laser: the sidecar at {address} is not reachable ({detail})",
            sqlstate,
            "start it with `laser sidecar` (or `make demo`), or point laser.sidecar_address at it",
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return SidecarError(f"laser: {detail}", sqlstate,
                            "the sidecar's queue is full; retry in a few seconds (SQLSTATE 53000 is transient)")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return SidecarError(f"laser: the sidecar at {address} refused the call: {detail}", sqlstate,
                            "name a file holding its address and token in laser.sidecar_credentials "
                            "(postgresql.conf), readable by the server's OS user")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return SidecarError(
            f"laser: no answer from the sidecar at {address} within laser.timeout_ms = {timeout_ms} ms",
            sqlstate,
            "raise laser.timeout_ms for slow queries (SET laser.timeout_ms = 300000)",
        )
    return SidecarError(f"laser: {detail}", sqlstate)


@dataclass(frozen=True)
class Caller:
    """Who asks: the database, the login role (session_user) and the current role (current_user),
    and on which server (its system identifier, and how it was reached, for error messages)."""

    database: str
    login_role: str
    role: str
    server_id: str = ""
    server: str = ""

    def target(self) -> laser_pb2.Target:
        return laser_pb2.Target(database=self.database, role=self.role, login_role=self.login_role,
                                server_id=self.server_id, server=self.server)


@dataclass(frozen=True)
class Channel:
    """Where the sidecar is and the token it wants (empty: none)."""

    address: str
    token: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer " + self.token),) if self.token else ()


def _invoke(method: Any, request: Any, channel: Channel, timeout_ms: int, interrupts: Interrupts | None) -> Any:
    """One call; with `interrupts`, waited for in short steps so that a cancel of the calling statement
    is noticed, and the call then cancelled (the sidecar drops it from its queue or stops verifying)."""
    if interrupts is None:
        return method(request, timeout=timeout_ms / 1000.0, metadata=channel.metadata())
    future = method.future(request, timeout=timeout_ms / 1000.0, metadata=channel.metadata())
    try:
        while True:
            try:
                return future.result(timeout=POLL_S)
            except grpc.FutureTimeoutError:
                interrupts()
    except BaseException:
        future.cancel()
        raise


ParameterValues = dict[int, "str | None"]  # {n: text or None} for $n


def parameter_sets(sets: list[ParameterValues], source: str) -> list[laser_pb2.ParameterSet]:
    """Known parameter sets (e.g. from the server log) as messages."""
    return [
        laser_pb2.ParameterSet(source=source, parameters=[
            laser_pb2.Parameter(number=int(n), value="" if v is None else str(v), is_null=v is None)
            for n, v in sorted(values.items())
        ])
        for values in sets
    ]


def rewrite(address: str | Channel, query: str, caller: Caller, timeout_ms: int,
            sets: list[laser_pb2.ParameterSet] | None = None, min_parameter_sets: int = 0,
            no_cache: bool = False, interrupts: Interrupts | None = None) -> laser_pb2.RewriteResponse:
    request = laser_pb2.RewriteRequest(
        query=query,
        target=caller.target(),
        options=laser_pb2.Options(min_parameter_sets=min_parameter_sets, no_cache=no_cache),
        parameter_sets=sets or [],
    )
    channel = address if isinstance(address, Channel) else Channel(address)
    try:
        reply: laser_pb2.RewriteResponse = _invoke(_stub(channel.address).Rewrite, request, channel, timeout_ms,
                                                   interrupts)
        return reply
    except grpc.RpcError as exc:
        raise _failure(exc, channel.address, timeout_ms) from None


def verify(address: str | Channel, original: str, candidate: str, caller: Caller, timeout_ms: int,
           sets: list[laser_pb2.ParameterSet] | None = None,
           min_parameter_sets: int = 0, interrupts: Interrupts | None = None) -> laser_pb2.VerifyResponse:
    request = laser_pb2.VerifyRequest(original=original, candidate=candidate, target=caller.target(),
                                      options=laser_pb2.Options(min_parameter_sets=min_parameter_sets),
                                      parameter_sets=sets or [])
    channel = address if isinstance(address, Channel) else Channel(address)
    try:
        reply: laser_pb2.VerifyResponse = _invoke(_stub(channel.address).Verify, request, channel, timeout_ms,
                                                  interrupts)
        return reply
    except grpc.RpcError as exc:
        raise _failure(exc, channel.address, timeout_ms) from None


def model_info(address: str | Channel, timeout_ms: int) -> laser_pb2.ModelInfoResponse:
    """What the sidecar generates candidates with (backend, model, versions, device)."""
    channel = address if isinstance(address, Channel) else Channel(address)
    try:
        reply: laser_pb2.ModelInfoResponse = _stub(channel.address).ModelInfo(
            laser_pb2.ModelInfoRequest(), timeout=timeout_ms / 1000.0, metadata=channel.metadata())
        return reply
    except grpc.RpcError as exc:
        raise _failure(exc, channel.address, timeout_ms) from None
