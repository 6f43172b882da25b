from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Options(_message.Message):
    __slots__ = ("max_candidates", "statement_timeout_ms", "timed_runs", "dead_zone", "no_cache", "min_parameter_sets")
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TIMED_RUNS_FIELD_NUMBER: _ClassVar[int]
    DEAD_ZONE_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    MIN_PARAMETER_SETS_FIELD_NUMBER: _ClassVar[int]
    max_candidates: int
    statement_timeout_ms: int
    timed_runs: int
    dead_zone: float
    no_cache: bool
    min_parameter_sets: int
    def __init__(self, max_candidates: _Optional[int] = ..., statement_timeout_ms: _Optional[int] = ..., timed_runs: _Optional[int] = ..., dead_zone: _Optional[float] = ..., no_cache: _Optional[bool] = ..., min_parameter_sets: _Optional[int] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("number", "value", "is_null")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    number: int
    value: str
    is_null: bool
    def __init__(self, number: _Optional[int] = ..., value: _Optional[str] = ..., is_null: _Optional[bool] = ...) -> None: ...

class ParameterSet(_message.Message):
    __slots__ = ("parameters", "source")
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.RepeatedCompositeFieldContainer[Parameter]
    source: str
    def __init__(self, parameters: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("database", "role", "login_role", "server_id", "server")
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LOGIN_ROLE_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    database: str
    role: str
    login_role: str
    server_id: str
    server: str
    def __init__(self, database: _Optional[str] = ..., role: _Optional[str] = ..., login_role: _Optional[str] = ..., server_id: _Optional[str] = ..., server: _Optional[str] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("status", "detail", "speedup", "original_ms", "candidate_ms", "equivalent", "evidence_json")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_MS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_MS_FIELD_NUMBER: _ClassVar[int]
    EQUIVALENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    status: str
    detail: str
    speedup: float
    original_ms: float
    candidate_ms: float
    equivalent: bool
    evidence_json: str
    def __init__(self, status: _Optional[str] = ..., detail: _Optional[str] = ..., speedup: _Optional[float] = ..., original_ms: _Optional[float] = ..., candidate_ms: _Optional[float] = ..., equivalent: _Optional[bool] = ..., evidence_json: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("sql", "source", "outcome")
    SQL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    sql: str
    source: str
    outcome: Outcome
    def __init__(self, sql: _Optional[str] = ..., source: _Optional[str] = ..., outcome: _Optional[_Union[Outcome, _Mapping]] = ...) -> None: ...

class RewriteRequest(_message.Message):
    __slots__ = ("query", "target", "options", "parameter_sets")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_SETS_FIELD_NUMBER: _ClassVar[int]
    query: str
    target: Target
    options: Options
    parameter_sets: _containers.RepeatedCompositeFieldContainer[ParameterSet]
    def __init__(self, query: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., parameter_sets: _Optional[_Iterable[_Union[ParameterSet, _Mapping]]] = ...) -> None: ...

class RewriteResponse(_message.Message):
    __slots__ = ("status", "original_sql", "rewritten_sql", "message", "speedup", "original_ms", "rewrite_ms", "source", "candidates", "backend", "generation_ms", "verification_ms", "cached", "measured_at", "evidence_json", "queue_wait_ms")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SQL_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_SQL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SPEEDUP_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_MS_FIELD_NUMBER: _ClassVar[int]
    REWRITE_MS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    GENERATION_MS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_MS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_JSON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    status: str
    original_sql: str
    rewritten_sql: str
    message: str
    speedup: float
    original_ms: float
    rewrite_ms: float
    source: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    backend: str
    generation_ms: float
    verification_ms: float
    cached: bool
    measured_at: str
    evidence_json: str
    queue_wait_ms: float
    def __init__(self, status: _Optional[str] = ..., original_sql: _Optional[str] = ..., rewritten_sql: _Optional[str] = ..., message: _Optional[str] = ..., speedup: _Optional[float] = ..., original_ms: _Optional[float] = ..., rewrite_ms: _Optional[float] = ..., source: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., backend: _Optional[str] = ..., generation_ms: _Optional[float] = ..., verification_ms: _Optional[float] = ..., cached: _Optional[bool] = ..., measured_at: _Optional[str] = ..., evidence_json: _Optional[str] = ..., queue_wait_ms: _Optional[float] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("original", "candidate", "target", "options", "parameter_sets")
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PARAMETER_SETS_FIELD_NUMBER: _ClassVar[int]
    original: str
    candidate: str
    target: Target
    options: Options
    parameter_sets: _containers.RepeatedCompositeFieldContainer[ParameterSet]
    def __init__(self, original: _Optional[str] = ..., candidate: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., options: _Optional[_Union[Options, _Mapping]] = ..., parameter_sets: _Optional[_Iterable[_Union[ParameterSet, _Mapping]]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("outcome", "queue_wait_ms")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    outcome: Outcome
    queue_wait_ms: float
    def __init__(self, outcome: _Optional[_Union[Outcome, _Mapping]] = ..., queue_wait_ms: _Optional[float] = ...) -> None: ...

class ModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfoResponse(_message.Message):
    __slots__ = ("backend", "model", "version", "device", "rules_alongside", "repair_rounds", "demonstrations", "details_json", "extension_version", "act_as", "sidecar_role")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    RULES_ALONGSIDE_FIELD_NUMBER: _ClassVar[int]
    REPAIR_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DEMONSTRATIONS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACT_AS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_ROLE_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    version: str
    device: str
    rules_alongside: bool
    repair_rounds: int
    demonstrations: int
    details_json: str
    extension_version: str
    act_as: str
    sidecar_role: str
    def __init__(self, backend: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., device: _Optional[str] = ..., rules_alongside: _Optional[bool] = ..., repair_rounds: _Optional[int] = ..., demonstrations: _Optional[int] = ..., details_json: _Optional[str] = ..., extension_version: _Optional[str] = ..., act_as: _Optional[str] = ..., sidecar_role: _Optional[str] = ...) -> None: ...
