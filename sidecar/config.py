"""Sidecar configuration: one dataclass, validated on creation; with `laser.config`, the only code
that reads the environment.

Each field's docstring is its documentation everywhere: the command-line flags are derived from the
fields (:func:`add_config_arguments`), with the docstring as the help text, so a new setting is a new field
and nothing else. A TOML file (``--config``, :func:`read_config_file`) names the same fields.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import os
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from sidecar.exposure import TokenError, listen_is_local, read_token_file

ENV_PREFIX = "LASER_SIDECAR_"
BACKENDS = ("rules", "transformers", "vllm")
ACT_AS = ("login", "set_role")

Settings = TypeVar("Settings")


@dataclass(frozen=True)
class SidecarConfig:
    """How the sidecar listens, reaches the database, and verifies."""

    listen: str = "127.0.0.1:50551"
    """gRPC address to serve on: host:port, or unix:/path (a Unix socket: who may connect is who may
    enter its directory). An address other than loopback (127.0.0.1, ::1, localhost) or a Unix socket
    needs a token (token_file or token): the sidecar refuses to start without one there."""
    token_file: str = ""
    """A file holding the shared secret every call must carry (metadata "authorization: Bearer
    TOKEN"), read on each call so that rotating it takes effect at once; readable only by the
    sidecar's and the database server's OS users. Health checks need no token."""
    token: str = field(default="", repr=False)
    """The shared secret itself, for the environment (LASER_SIDECAR_TOKEN): a flag would show it in
    ps. Prefer token_file."""
    dsn: str = "host=/var/run/postgresql port=5432 user=laser_sidecar"
    """libpq conninfo of the sidecar's own read-only role, without dbname: the request names the database."""
    act_as: str = field(default="login", metadata={"choices": ACT_AS})
    """How the sidecar takes the caller's identity. "login": it logs in as the caller's login role
    (needs pg_hba trust or peer mapping on the socket it uses) and SETs ROLE to the current role;
    the caller's functions can then reach no role the caller could not. "set_role": it logs in as
    the dsn's user and SETs ROLE to the caller, which must be granted to that user; a caller able to
    create functions could then switch to any other role granted to it."""
    backend: str = field(default="rules", metadata={"choices": BACKENDS})
    """Candidate generator: "rules" (no model), "transformers" (a local Hugging Face model on CPU
    or GPU) or "vllm" (a local model in an in-process vLLM engine, GPU)."""
    model_dir: str = ""
    """The model directory (Hugging Face format) for the transformers and vllm backends."""
    adapter: str = ""
    """A PEFT LoRA adapter of ``model_dir`` (e.g. written by ``laser train grpo --lora-r``): the
    transformers backend merges it into the base at load, the vllm backend serves it as a LoRA."""
    device: str = "auto"
    """transformers backend: "auto" (cuda when available), "cpu", "cuda" or "cuda:N"."""
    with_rules: bool = field(default=True, metadata={"flag": "rules"})
    """With a model backend, also verify the rules backend's candidates (one candidate pool)."""
    temperature: float = 0.0
    """Model sampling temperature; 0 is greedy (one candidate per prompt), above 0 samples
    max_candidates completions."""
    max_new_tokens: int = 1024
    """Cap on the tokens a model generates per completion."""
    repair_rounds: int = 3
    """Self-correction: rounds a candidate without a statement or rejected by EXPLAIN is sent back
    with the reason (LASER §5.3)."""
    counterexample_feedback: bool = True
    """Send a non-equivalent model candidate back once with the verifier's counterexample."""
    demonstrations: int = 2
    """Retrieved demonstrations per model prompt (0: none)."""
    max_candidates: int = 4
    """Candidates verified per request."""
    search_budget_s: float = 5.0
    """Rules backend: seconds its beam search over rule sequences may spend planning candidates
    (EXPLAIN) before verification starts."""
    statement_timeout_ms: int = 30_000
    """Cap on each execution of either query while verifying."""
    timed_runs: int = 3
    """Timed runs per query after the warm-up."""
    dead_zone: float = 0.10
    """Speedups within 1 ± dead_zone are "no change"."""
    min_parameter_sets: int = 3
    """A statement with `$n` parameters is verified on at least this many parameter sets (sampled
    executions first, then values from the planner's statistics); a rewrite must win on each."""
    max_concurrent: int = 1
    """Requests verified at the same time; more make timings interfere on small machines (see
    BENCHMARKS.md, "Concurrent callers")."""
    max_queued: int = 32
    """Requests that may wait for a verification slot; one more is refused at once with
    RESOURCE_EXHAUSTED (SQLSTATE 53000 in the database), to be retried later. A caller that goes away
    leaves the queue."""
    cache_ttl_s: float = 600.0
    """How long a Rewrite answer is reused for the same database, role, query and options."""
    grace_s: float = 5.0
    """On shutdown, how long in-flight requests may finish."""

    def __post_init__(self) -> None:
        if not self.listen:
            raise ValueError("listen must be an address such as 127.0.0.1:50551")
        try:
            named = conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError as exc:
            raise ValueError(f"dsn is not a valid libpq conninfo: {exc}") from None
        if "dbname" in named:
            raise ValueError("dsn must not name a database (dbname=...): each request names its own")
        if self.act_as not in ACT_AS:
            raise ValueError(f"act_as must be 'login' or 'set_role'; got {self.act_as!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.backend != "rules" and not self.model_dir:
            raise ValueError(f"the {self.backend} backend needs a model directory (--model-dir)")
        if self.adapter and self.backend == "rules":
            raise ValueError("an adapter (--adapter) needs a model backend: transformers or vllm")
        for name in ("max_candidates", "statement_timeout_ms", "timed_runs", "max_concurrent", "min_parameter_sets",
                     "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("repair_rounds", "demonstrations", "max_queued"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError("temperature must be between 0 and 5")
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError("dead_zone must be in [0, 1)")
        if self.token and self.token_file:
            raise ValueError("give the token either in a file (token_file) or directly (token), not both")
        if self.token_file:
            try:
                read_token_file(self.token_file)
            except TokenError as exc:
                raise ValueError(str(exc)) from None
        if not (self.token or self.token_file) and not listen_is_local(self.listen):
            raise ValueError(
                f"refusing to listen on {self.listen} without a token: the sidecar trusts the identity each "
                "request names, so anyone who can reach it could verify as any role. Listen on 127.0.0.1 or "
                "a Unix socket (unix:/path), or give a shared secret with --token-file (or LASER_SIDECAR_TOKEN)")
        if self.cache_ttl_s < 0 or self.grace_s < 0 or self.search_budget_s < 0:
            raise ValueError("cache_ttl_s, grace_s and search_budget_s must not be negative")

    @classmethod
    def from_env(cls, defaults: Mapping[str, Any] | None = None, **overrides: Any) -> SidecarConfig:
        """`defaults` (e.g. the local cluster's address), then LASER_SIDECAR_<FIELD> variables, then
        explicit (non-None) overrides."""
        return from_env(cls, ENV_PREFIX, defaults, overrides)


def from_env(cls: type[Settings], prefix: str, defaults: Mapping[str, Any] | None,
             overrides: Mapping[str, Any]) -> Settings:
    """A settings dataclass from three layers: `defaults`, then `<prefix><FIELD>` variables, then the
    non-None `overrides`. A variable that does not parse as its field's type is a ValueError."""
    values: dict[str, Any] = dict(defaults or {})
    for f in fields(cls):  # type: ignore[arg-type]
        raw = os.environ.get(prefix + f.name.upper())
        if raw is not None:
            values[f.name] = _coerce(f.type, raw, prefix + f.name.upper())
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = SidecarConfig,
                  prefix: str = ENV_PREFIX, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the settings dataclass `cls`: `--field-name`, typed as the field, help
    from the field's docstring; booleans get `--flag/--no-flag`. Every flag defaults to None, so
    :func:`from_env` can tell "not given" from a value."""
    docs = field_docs(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.metadata.get("flag", f.name).replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        text = docs.get(f.name, "").replace("%", "%%")
        help_text = f"{text} (default: {default!r}; env {prefix}{f.name.upper()})"
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        parser.add_argument(flag, dest=f.name, type=kind, default=None, choices=f.metadata.get("choices"),
                            metavar=None if "choices" in f.metadata else f.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None) -> SidecarConfig:
    """The configuration the flags of :func:`add_config_arguments` ask for, over the environment, the
    TOML file of ``--config`` (when given) and `defaults`, in that order of precedence."""
    layered = dict(defaults or {})
    if getattr(args, "config", None):
        layered.update(read_config_file(args.config))
    given = {f.name: getattr(args, f.name, None) for f in fields(SidecarConfig)}
    return SidecarConfig.from_env(layered, **given)


_TOML_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def read_config_file(path: str | Path, cls: type = SidecarConfig) -> dict[str, Any]:
    """The settings a TOML file gives, as top-level keys named like the fields of `cls` (``listen``,
    ``dsn``, ``act_as``, ...), checked by :func:`checked_settings`. A file that cannot be read or parsed
    is a ValueError naming it."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read the configuration file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    return checked_settings(data, str(path), cls)


def checked_settings(data: Mapping[str, Any], source: str, cls: type = SidecarConfig) -> dict[str, Any]:
    """`data` as values of the fields of `cls`: an unknown key, a table, or a value of the wrong type is
    a ValueError naming `source` and the key; nothing is guessed.

    >>> checked_settings({"listen": "127.0.0.1:50600", "dead_zone": 0, "with_rules": False}, "sidecar.toml")
    {'listen': '127.0.0.1:50600', 'dead_zone': 0.0, 'with_rules': False}
    >>> checked_settings({"listen_on": "127.0.0.1:50600"}, "sidecar.toml")
    Traceback (most recent call last):
    ValueError: sidecar.toml: unknown setting 'listen_on' (did you mean 'listen'?); the settings are ...
    >>> checked_settings({"max_candidates": "4"}, "sidecar.toml")
    Traceback (most recent call last):
    ValueError: sidecar.toml: max_candidates must be an integer, got '4'
    """
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key.replace("-", "_"), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{source}: unknown setting {key!r}{hint}; the settings are the fields of "
                             f"{cls.__name__}: {', '.join(known)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        kind = str(known[key].type)
        accepted = _TOML_TYPES.get(kind, (str,))
        if isinstance(value, bool) != (kind == "bool") or not isinstance(value, accepted):
            shown = f"a table [{key}]" if isinstance(value, dict) else repr(value)
            raise ValueError(f"{source}: {key} must be {_TYPE_WORDS.get(kind, 'a string')}, got {shown}")
        values[key] = float(data[key]) if kind == "float" else value
    return values


def notify_socket() -> str | None:
    """Where a service manager waits for readiness (systemd's NOTIFY_SOCKET with Type=notify), if any."""
    return os.environ.get("NOTIFY_SOCKET") or None


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, whitespace folded (vLLM's convention).

    >>> field_docs(SidecarConfig)["max_candidates"]
    'Candidates verified per request.'
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _coerce(type_name: Any, raw: str, variable: str) -> Any:
    type_name = str(type_name)
    if type_name == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{variable}={raw!r} is not a boolean (true/false)")
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a {type_name}") from None
    return raw
