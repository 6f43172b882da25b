"""Sidecar configuration: one dataclass, validated on creation; the only code that reads the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

ENV_PREFIX = "LASER_SIDECAR_"
BACKENDS = ("rules", "transformers", "vllm")


@dataclass(frozen=True)
class SidecarConfig:
    """How the sidecar listens, reaches the database, and verifies."""

    listen: str = "127.0.0.1:50551"
    """gRPC address to serve on (host:port, or unix:/path)."""
    dsn: str = "host=/var/run/postgresql port=5432 user=laser_sidecar"
    """libpq conninfo of the sidecar's own read-only role, without dbname: the request names the database."""
    act_as: str = "login"
    """How the sidecar takes the caller's identity. "login": it logs in as the caller's login role
    (needs pg_hba trust or peer mapping on the socket it uses) and SETs ROLE to the current role;
    the caller's functions can then reach no role the caller could not. "set_role": it logs in as
    the dsn's user and SETs ROLE to the caller, which must be granted to that user; a caller able to
    create functions could then switch to any other role granted to it."""
    backend: str = "rules"
    """Candidate generator: "rules" (no model), "transformers" (a local Hugging Face model on CPU
    or GPU) or "vllm" (a local model in an in-process vLLM engine, GPU)."""
    model_dir: str = ""
    """The model directory (Hugging Face format) for the transformers and vllm backends."""
    device: str = "auto"
    """transformers backend: "auto" (cuda when available), "cpu", "cuda" or "cuda:N"."""
    with_rules: bool = True
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
    search_budget_s: float = 5.0
    """Rules backend: seconds its beam search over rule sequences may spend planning candidates
    (EXPLAIN) before verification starts."""
    """Candidates verified per request."""
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
    """Requests verified at the same time; more make timings interfere on small machines."""
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
        if self.act_as not in ("login", "set_role"):
            raise ValueError(f"act_as must be 'login' or 'set_role'; got {self.act_as!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.backend != "rules" and not self.model_dir:
            raise ValueError(f"the {self.backend} backend needs a model directory (--model-dir)")
        for name in ("max_candidates", "statement_timeout_ms", "timed_runs", "max_concurrent", "min_parameter_sets",
                     "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("repair_rounds", "demonstrations"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0.0 <= self.temperature <= 5.0:
            raise ValueError("temperature must be between 0 and 5")
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError("dead_zone must be in [0, 1)")
        if self.cache_ttl_s < 0 or self.grace_s < 0 or self.search_budget_s < 0:
            raise ValueError("cache_ttl_s, grace_s and search_budget_s must not be negative")

    @classmethod
    def from_env(cls, **overrides: Any) -> SidecarConfig:
        """Defaults, then LASER_SIDECAR_<FIELD> variables, then explicit (non-None) overrides."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    if type_name in ("bool", bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean (true/false)")
    try:
        if type_name in ("int", int):
            return int(raw)
        if type_name in ("float", float):
            return float(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a {type_name}") from None
    return raw
