"""gRPC client for the sidecar's laser.v1 service, with one cached channel per address."""
from __future__ import annotations

from dataclasses import dataclass

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
    grpc.StatusCode.RESOURCE_EXHAUSTED: "53000",  # insufficient_resources
}


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
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return SidecarError(
            f"laser: no answer from the sidecar at {address} within laser.timeout_ms = {timeout_ms} ms",
            sqlstate,
            "raise laser.timeout_ms for slow queries (SET laser.timeout_ms = 300000)",
        )
    return SidecarError(f"laser: {detail}", sqlstate)


@dataclass(frozen=True)
class Caller:
    """Who asks: the database, the login role (session_user) and the current role (current_user)."""

    database: str
    login_role: str
    role: str

    def target(self) -> laser_pb2.Target:
        return laser_pb2.Target(database=self.database, role=self.role, login_role=self.login_role)


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


def rewrite(address: str, query: str, caller: Caller, timeout_ms: int,
            sets: list[laser_pb2.ParameterSet] | None = None, min_parameter_sets: int = 0,
            no_cache: bool = False) -> laser_pb2.RewriteResponse:
    request = laser_pb2.RewriteRequest(
        query=query,
        target=caller.target(),
        options=laser_pb2.Options(min_parameter_sets=min_parameter_sets, no_cache=no_cache),
        parameter_sets=sets or [],
    )
    try:
        reply: laser_pb2.RewriteResponse = _stub(address).Rewrite(request, timeout=timeout_ms / 1000.0)
        return reply
    except grpc.RpcError as exc:
        raise _failure(exc, address, timeout_ms) from None


def verify(address: str, original: str, candidate: str, caller: Caller, timeout_ms: int,
           sets: list[laser_pb2.ParameterSet] | None = None,
           min_parameter_sets: int = 0) -> laser_pb2.VerifyResponse:
    request = laser_pb2.VerifyRequest(original=original, candidate=candidate, target=caller.target(),
                                      options=laser_pb2.Options(min_parameter_sets=min_parameter_sets),
                                      parameter_sets=sets or [])
    try:
        reply: laser_pb2.VerifyResponse = _stub(address).Verify(request, timeout=timeout_ms / 1000.0)
        return reply
    except grpc.RpcError as exc:
        raise _failure(exc, address, timeout_ms) from None


def model_info(address: str, timeout_ms: int) -> laser_pb2.ModelInfoResponse:
    """What the sidecar generates candidates with (backend, model, versions, device)."""
    try:
        reply: laser_pb2.ModelInfoResponse = _stub(address).ModelInfo(laser_pb2.ModelInfoRequest(),
                                                                       timeout=timeout_ms / 1000.0)
        return reply
    except grpc.RpcError as exc:
        raise _failure(exc, address, timeout_ms) from None
