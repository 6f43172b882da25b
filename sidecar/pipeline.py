"""The rewrite pipeline: candidates from a backend, each verified, the fastest equivalent one chosen."""
from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pglast
import psycopg
from psycopg.conninfo import make_conninfo

from sidecar import prompts
from sidecar.backends import load_backend
from sidecar.backends.base import Backend, Prompt
from sidecar.catalog import (
    Catalog,
    load_catalog,
    load_scan_estimates,
    referenced_tables,
)
from sidecar.config import SidecarConfig
from sidecar.generation import Draft, GenerationReport, SelfCorrector
from sidecar.retrieval import (
    Demonstration,
    DemoPool,
    Embedder,
    Retrieved,
    load_demonstrations,
)
from sidecar.rules.explicit_join_order import scan_probes
from sidecar.verify import (
    GuardError,
    Outcome,
    OutcomeStatus,
    ReadOnlySession,
    Verifier,
    VerifierConfig,
    guard,
    parameters,
)
from sidecar.verify.session import DatabaseUnavailable, PermissionRefused, SessionError
from sidecar.verify.verifier import OriginalProfile

log = logging.getLogger("laser.pipeline")
MAX_CACHED_ANSWERS = 1024
MAX_OWN_WINS = 500
"""Verified wins this sidecar keeps per database as demonstrations (the oldest go first)."""


@dataclass(frozen=True)
class RequestOptions:
    """Per-request overrides of the sidecar's defaults (None = default)."""

    max_candidates: int | None = None
    statement_timeout_ms: int | None = None
    timed_runs: int | None = None
    dead_zone: float | None = None
    no_cache: bool = False
    deadline: float | None = None
    """time.monotonic() by which the caller stops waiting: no new candidate is verified after it,
    and no statement may run past it."""
    parameter_sets: tuple[tuple[tuple[int, str | None], ...], ...] = ()
    """For a statement with `$n`: known values ((n, value), ...) per set, e.g. sampled from the
    server log; tried before sets chosen from the planner's statistics."""
    min_parameter_sets: int | None = None
    """A statement with `$n` is verified on at least this many parameter sets, and a rewrite must
    win on each."""

    def given_sets(self) -> list[dict[int, str | None]]:
        return [dict(values) for values in self.parameter_sets]


@dataclass(frozen=True)
class Attempt:
    sql: str
    source: str
    outcome: Outcome
    generation: dict[str, Any] | None = None
    """For a model's candidate: its draft (kind, round, parent, tokens, what was wrong with it); for
    a rules candidate: its rule sequence and the planner's estimate that ranked it."""

    def to_json(self) -> dict[str, Any]:
        out = {"source": self.source, "sql": self.sql, **self.outcome.to_json()}
        if self.generation is not None:
            out["generation"] = self.generation
        return out


@dataclass
class RewriteResult:
    """The answer to one Rewrite request."""

    status: str  # "improved" | "no_verified_improvement"
    original_sql: str
    rewritten_sql: str
    message: str
    backend: str
    speedup: float = 1.0
    original_ms: float = 0.0
    rewrite_ms: float = 0.0
    source: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    generation_ms: float = 0.0
    verification_ms: float = 0.0
    measured_at: str = ""
    cached: bool = False
    verified_as: str = ""
    original_example: str = ""
    """The original as executed: with the first parameter set bound, for a statement with `$n`."""
    model: str = ""
    backend_version: str = ""
    generation: dict[str, Any] | None = None
    """For a model backend: drafts, repair rounds, tokens, tokens/s, generation vs check time."""
    demonstrations: list[dict[str, Any]] = field(default_factory=list)
    """The retrieved demonstrations shown to the model, with their similarity scores."""
    search: dict[str, Any] | None = None
    """What the rules' search did: candidates found, planned, pruned, milliseconds, cut short."""

    def evidence(self) -> dict[str, Any]:
        """Everything behind the answer, as one JSON-ready document."""
        best = next((a for a in self.attempts if a.sql == self.rewritten_sql and a.source == self.source), None)
        best_evidence = best.outcome.evidence if best else {}
        return {
            "status": self.status,
            "message": self.message,
            "original_sql": self.original_sql,
            "rewritten_sql": self.rewritten_sql,
            "verified": self.status == "improved",
            "speedup": round(self.speedup, 4),
            "original_ms": round(self.original_ms, 3),
            "rewrite_ms": round(self.rewrite_ms, 3),
            "source": self.source,
            "backend": self.backend,
            "latencies_ms": best_evidence.get("latencies_ms"),
            "equivalence": best_evidence.get("equivalence"),
            "plan": {
                "before": best_evidence.get("plan_before"),
                "after": best_evidence.get("plan_after"),
                "changed": best_evidence.get("plan_changed"),
                "cost_before": best_evidence.get("cost_before"),
                "cost_after": best_evidence.get("cost_after"),
            } if best else None,
            "parameter_sets": best_evidence.get("parameter_sets", []),
            "speedup_min": best_evidence.get("speedup_min", round(self.speedup, 4)),
            "original_example": self.original_example,
            "pretty": pretty_diff(self.original_sql, self.rewritten_sql) if best else None,
            "attempts": [a.to_json() for a in self.attempts],
            "model": self.model,
            "backend_version": self.backend_version,
            "generation_ms": round(self.generation_ms, 3),
            "verification_ms": round(self.verification_ms, 3),
            "generation": self.generation,
            "demonstrations": self.demonstrations,
            "search": self.search,
            "verified_as": self.verified_as,
            "measured_at": self.measured_at,
            "cached": self.cached,
        }


class RewritePipeline:
    """Owns the backend and the answer cache; opens one read-only session per request."""

    def __init__(self, config: SidecarConfig, backend: Backend, rules: Backend | None = None,
                 demonstrations: DemoPool | None = None) -> None:
        """`backend` writes the candidates; a model backend may have the `rules` backend beside it
        (one candidate pool). `demonstrations` ranks retrieved examples for model prompts; each
        database's pool is the `laser.demonstrations` view plus this sidecar's own wins."""
        self.config = config
        self.backend = backend
        self.rules = rules
        self.demonstrations = demonstrations
        self._own_wins: dict[str, list[Demonstration]] = {}
        self._cache: dict[tuple[Any, ...], tuple[float, RewriteResult]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: SidecarConfig) -> RewritePipeline:
        """The backend the configuration names (its model loaded), the rules beside a model, and the
        demonstration pool for model prompts. Raises BackendError when the model cannot be loaded."""
        backend = load_backend(config.backend, config.model_dir, config.device)
        if config.backend == "rules":
            return cls(config, backend)
        rules = load_backend("rules") if config.with_rules else None
        pool = None
        if config.demonstrations > 0:
            embedder = Embedder()
            if not embedder.available:
                log.warning("demonstrations ranked by structure only: %s", embedder.unavailable_reason)
            pool = DemoPool(embedder if embedder.available else None)
        return cls(config, backend, rules=rules, demonstrations=pool)

    @property
    def uses_model(self) -> bool:
        return self.backend.name != "rules"

    def _verifier_config(self, options: RequestOptions) -> VerifierConfig:
        timeout_ms = options.statement_timeout_ms or self.config.statement_timeout_ms
        if options.deadline is not None:
            timeout_ms = max(1, min(timeout_ms, int((options.deadline - time.monotonic()) * 1000)))
        return VerifierConfig(
            statement_timeout_ms=timeout_ms,
            timed_runs=options.timed_runs or self.config.timed_runs,
            dead_zone=self.config.dead_zone if options.dead_zone is None else options.dead_zone,
        )

    def _session(self, database: str, role: str, login_role: str,
                 verifier_config: VerifierConfig) -> ReadOnlySession:
        """A read-only session acting as the caller (see SidecarConfig.act_as)."""
        if not database:
            raise ValueError("the request names no database")
        if not role:
            raise ValueError("the request names no role")
        timeout = verifier_config.statement_timeout_ms
        if self.config.act_as == "set_role":
            return ReadOnlySession.connect(make_conninfo(self.config.dsn, dbname=database), role,
                                           statement_timeout_ms=timeout)
        login = login_role or role
        try:
            return ReadOnlySession.connect(make_conninfo(self.config.dsn, dbname=database, user=login),
                                           role if role != login else None, statement_timeout_ms=timeout)
        except DatabaseUnavailable as failure:
            raise self._login_failure(database, login, failure) from None

    def _login_failure(self, database: str, login: str, failure: DatabaseUnavailable) -> SessionError:
        """Why logging in as the caller failed, told from the catalog (libpq gives no SQLSTATE then)."""
        try:
            with psycopg.connect(make_conninfo(self.config.dsn, dbname=database), connect_timeout=5) as conn:
                row = conn.execute("SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = %s",
                                   (login,)).fetchone()
        except psycopg.Error:
            return failure  # the database itself is unreachable
        if row is None:
            return PermissionRefused(f"role {login!r} does not exist")
        if not row[0]:
            return PermissionRefused(f"role {login!r} may not log in")
        return PermissionRefused(
            f"the sidecar may not log in as {login!r} to verify with its privileges; allow it in "
            "pg_hba.conf (trust or peer on the sidecar's socket) or run the sidecar with --act-as set_role"
        )

    def rewrite(self, query: str, database: str, role: str, login_role: str = "",
                options: RequestOptions = RequestOptions()) -> RewriteResult:
        """Best verified rewrite of `query`, run as `role` in `database`.

        Raises GuardError / OriginalError (bad query), PermissionRefused, DatabaseUnavailable.
        """
        key = (database, role, login_role, fingerprint(query), options.max_candidates,
               options.statement_timeout_ms, options.timed_runs, options.dead_zone, options.parameter_sets,
               options.min_parameter_sets)
        if not options.no_cache:
            with self._lock:
                hit = self._cache.get(key)
            if hit and time.monotonic() - hit[0] < self.config.cache_ttl_s:
                answer = hit[1]
                same = {"original_sql": query} | ({} if answer.status == "improved" else {"rewritten_sql": query})
                return dataclasses.replace(answer, cached=True, **same)
        result = self._rewrite(query, database, role, login_role, options)
        if options.deadline is None or time.monotonic() < options.deadline:  # not cut short
            now = time.monotonic()
            with self._lock:
                self._cache[key] = (now, result)
                stale = [k for k, (at, _) in self._cache.items() if now - at >= self.config.cache_ttl_s]
                for k in stale:
                    del self._cache[k]
                while len(self._cache) > MAX_CACHED_ANSWERS:  # oldest first (dicts keep insertion order)
                    del self._cache[next(iter(self._cache))]
        return result

    def _rewrite(self, query: str, database: str, role: str, login_role: str,
                 options: RequestOptions) -> RewriteResult:
        query = parameters.normalize_placeholders(query)
        guard(query)  # refuse before touching the database
        verifier_config = self._verifier_config(options)
        with self._session(database, role, login_role, verifier_config) as session:
            verifier = Verifier(session, verifier_config)
            verified_as = session.role or session.connection.info.user
            started = time.perf_counter()
            originals = verifier.prepare_sets(query, options.given_sets(), self._min_sets(options))
            original = originals[0]
            tables = referenced_tables(query)
            catalog = load_catalog(session.connection, tables)
            with session.transaction():  # as the caller, read only; a failing probe is skipped
                catalog = load_scan_estimates(session.connection, catalog, [])  # the planner's limits first
                catalog = load_scan_estimates(session.connection, catalog, scan_probes(query, catalog))
            prepared_ms = (time.perf_counter() - started) * 1000.0

            limit = options.max_candidates or self.config.max_candidates
            attempts: list[Attempt] = []
            seen: set[str] = set()
            report: GenerationReport | None = None
            shown: list[Retrieved] = []
            started = time.perf_counter()
            generation_ms = 0.0
            search: dict[str, Any] | None = None
            if not self.uses_model:
                generation_ms, search = self._listed_attempts(self.backend, verifier, originals, query, catalog,
                                                              limit, options, attempts, seen)
            else:
                if self.rules is not None:
                    generation_ms, search = self._listed_attempts(self.rules, verifier, originals, query, catalog,
                                                                  limit, options, attempts, seen)
                shown = self._retrieve(session, database, query)
                report = self._model_attempts(self.backend, verifier, originals, query, catalog, shown, limit,
                                              options, attempts, seen)
                generation_ms += report.generation_s * 1000.0
            verification_ms = prepared_ms + (time.perf_counter() - started) * 1000.0 - generation_ms

        result = RewriteResult(
            status="no_verified_improvement",
            original_sql=query,
            rewritten_sql=query,
            message="",
            backend=self.backend.name,
            original_ms=original.warmup.elapsed_ms,
            rewrite_ms=original.warmup.elapsed_ms,
            attempts=attempts,
            generation_ms=generation_ms,
            verification_ms=verification_ms,
            measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            verified_as=verified_as,
            original_example=original.sql,
            model=getattr(self.backend, "model", ""),
            backend_version=getattr(self.backend, "version", ""),
            generation=report.summary() if report is not None else None,
            search=search or None,
            demonstrations=[{"original_sql": r.demonstration.original_sql, "speedup": r.demonstration.speedup,
                             "origin": r.demonstration.origin, "score": round(r.score, 4),
                             "structural": round(r.structural, 4), "cosine": None if r.cosine is None else round(r.cosine, 4)} for r in shown],
        )
        if self.uses_model:
            result.backend = self.backend.name + ("+rules" if self.rules is not None else "")
        winners = [a for a in attempts if a.outcome.status is OutcomeStatus.FASTER]
        if winners:
            best = max(winners, key=lambda a: a.outcome.speedup)
            result.status = "improved"
            result.rewritten_sql = best.sql
            result.source = best.source
            result.speedup = best.outcome.speedup
            result.original_ms = best.outcome.original_ms
            result.rewrite_ms = best.outcome.candidate_ms
            self._remember(database, query, best)
            if best.outcome.evidence.get("original_timeouts_while_timed"):
                result.message = (f"verified equivalent and at least {best.outcome.speedup:.1f}x faster "
                                  f"({best.source}); the original hit the {verifier_config.statement_timeout_ms / 1000:.0f} s "
                                  "cap in some of its timed runs, counted at the cap")
            elif best.outcome.evidence.get("speedup_is_lower_bound"):
                result.message = (f"at least {best.outcome.speedup:.1f}x faster ({best.source}); the original does "
                                  f"not finish within {best.outcome.original_ms / 1000:.0f} s, so equivalence was "
                                  "shown on sampled and perturbed instances, not on the live data")
            elif len(originals) > 1:
                result.message = (f"verified equivalent and faster on each of {len(originals)} parameter sets "
                                  f"({best.outcome.speedup:.2f}x geometric mean, "
                                  f"{best.outcome.evidence.get('speedup_min', best.outcome.speedup):.2f}x at least; "
                                  f"{best.source})")
            else:
                result.message = f"verified equivalent and {best.outcome.speedup:.2f}x faster ({best.source})"
        elif not attempts and report is not None and report.refused:
            result.message = f"the {self.backend.name} backend refused the prompt: {report.refused[0]}"
        elif not attempts:
            result.message = f"the {self.backend.name} backend found no candidate rewrite for this query"
        else:
            summary = ", ".join(f"{a.source}: {a.outcome.status.value}" for a in attempts)
            result.message = f"no candidate was verified faster ({summary})"
        return result

    def _past(self, options: RequestOptions) -> bool:
        return options.deadline is not None and time.monotonic() >= options.deadline

    def _listed_attempts(self, backend: Backend, verifier: Verifier, originals: list[OriginalProfile], query: str,
                         catalog: Catalog, limit: int, options: RequestOptions, attempts: list[Attempt],
                         seen: set[str]) -> tuple[float, dict[str, Any]]:
        """Verify the candidates of a backend that answers with SQL itself (the rules); returns the
        milliseconds spent generating them and what the backend reported of its search."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.config.search_budget_s
        if options.deadline is not None:
            deadline = min(deadline, options.deadline)
        prompt = Prompt(query=query, catalog=catalog, cost=lambda sql: verifier.plan_cost(originals[0], sql),
                        deadline=deadline, search={})
        completions = backend.generate([prompt], n=limit)[0]
        generation_ms = (time.perf_counter() - started) * 1000.0
        for completion in completions[:limit]:
            if self._past(options):
                break  # the caller has stopped waiting
            if completion.text not in seen:
                seen.add(completion.text)
                attempts.append(Attempt(completion.text, completion.source,
                                        verifier.verify_sets(originals, completion.text),
                                        generation=dict(completion.details) or None))
        return generation_ms, prompt.search or {}

    def _model_attempts(self, backend: Backend, verifier: Verifier, originals: list[OriginalProfile], query: str,
                        catalog: Catalog, shown: list[Retrieved], limit: int, options: RequestOptions,
                        attempts: list[Attempt], seen: set[str]) -> GenerationReport:
        """Prompt the model, self-correct on EXPLAIN errors, verify what survives, feed one
        counterexample back for each non-equivalent answer; every draft becomes an attempt."""
        original = originals[0]
        prompt = model_prompt(query, catalog, original, shown)
        def check(sql: str) -> tuple[str, str] | None:
            try:
                guard(sql)
            except GuardError as exc:
                return "guard", str(exc)
            error = verifier.explain_error(original, sql)
            return None if error is None else ("explain", error)

        corrector = SelfCorrector(backend, check,
                                  max_rounds=self.config.repair_rounds, temperature=self.config.temperature,
                                  max_tokens=self.config.max_new_tokens, deadline=options.deadline)

        def verify(ready: list[Draft]) -> list[tuple[Draft, Outcome]]:
            verified = []
            for draft in ready:
                assert draft.sql is not None
                if self._past(options) or draft.sql in seen:
                    continue
                seen.add(draft.sql)
                verified.append((draft, verifier.verify_sets(originals, draft.sql)))
            return verified

        verified = verify(corrector.generate(prompt, n=limit))
        if self.config.counterexample_feedback:
            for draft, outcome in list(verified):
                if outcome.status is OutcomeStatus.NOT_EQUIVALENT and outcome.counterexample and not self._past(options):
                    verified += verify(corrector.feedback(prompt, draft, outcome.counterexample, outcome.detail))
        outcomes = {id(draft): outcome for draft, outcome in verified}
        drafts = corrector.report.drafts
        for index, draft in enumerate(drafts):
            outcome = outcomes.get(id(draft))
            if outcome is None:
                if draft.stage == "extraction":
                    outcome = Outcome(OutcomeStatus.EXTRACTION_FAIL, draft.error)
                elif draft.stage == "guard":
                    outcome = Outcome(OutcomeStatus.GUARD_REFUSED, draft.error)
                elif draft.stage:
                    outcome = Outcome(OutcomeStatus.EXEC_ERROR, draft.error, evidence={"stage": draft.stage})
                else:
                    continue  # a duplicate of a candidate already verified, or cut off by the deadline
            attempts.append(Attempt(draft.sql or draft.completion.text, draft.completion.source, outcome,
                                    generation={"draft": index, **draft.to_json()}))
        return corrector.report

    def prompt(self, query: str, database: str, role: str, login_role: str = "") -> Prompt:
        """The prompt a model backend gets for `query` (e.g. to build fine-tuning data that matches
        serving exactly, or to inspect it), with the demonstrations retrieved right now."""
        query = parameters.normalize_placeholders(query)
        guard(query)
        verifier_config = self._verifier_config(RequestOptions())
        with self._session(database, role, login_role, verifier_config) as session:
            original = Verifier(session, verifier_config).prepare(query)
            catalog = load_catalog(session.connection, referenced_tables(query))
            shown = self._retrieve(session, database, query)
        return model_prompt(query, catalog, original, shown)

    def _retrieve(self, session: ReadOnlySession, database: str, query: str) -> list[Retrieved]:
        """The most similar verified rewrites: the database's pool (as the caller sees it) and ours."""
        if self.demonstrations is None or self.config.demonstrations <= 0:
            return []
        extra = load_demonstrations(session.connection)
        with self._lock:
            extra += self._own_wins.get(database, [])
        return self.demonstrations.top_k(query, self.config.demonstrations, extra=extra)

    def _remember(self, database: str, query: str, best: Attempt) -> None:
        """A win of at least the pool's threshold becomes a demonstration for this database."""
        if self.demonstrations is None or best.outcome.speedup < self.demonstrations.min_speedup:
            return
        demo = Demonstration(query, best.sql, best.outcome.speedup, best.source, origin="this sidecar")
        with self._lock:
            wins = self._own_wins.setdefault(database, [])
            if all(w.original_sql != query for w in wins):
                wins.append(demo)
                del wins[:-MAX_OWN_WINS]

    def verify(self, original: str, candidate: str, database: str, role: str, login_role: str = "",
               options: RequestOptions = RequestOptions()) -> Outcome:
        """Verify one given candidate against `original` (on each parameter set, if it has `$n`)."""
        original = parameters.normalize_placeholders(original)
        candidate = parameters.normalize_placeholders(candidate)
        guard(original)
        verifier_config = self._verifier_config(options)
        with self._session(database, role, login_role, verifier_config) as session:
            verifier = Verifier(session, verifier_config)
            originals = verifier.prepare_sets(original, options.given_sets(), self._min_sets(options))
            return verifier.verify_sets(originals, candidate)

    def _min_sets(self, options: RequestOptions) -> int:
        return options.min_parameter_sets or self.config.min_parameter_sets


def fingerprint(query: str) -> str:
    """The query as PostgreSQL's grammar sees it, for the answer cache: layout and keyword case do
    not matter, constants do. A text with comments (which may carry planner hints) is kept as is.

    >>> fingerprint("select  a\\nFROM t where b = 1") == fingerprint("SELECT a FROM t WHERE b = 1")
    True
    >>> fingerprint("SELECT a FROM t WHERE b = 1") == fingerprint("SELECT a FROM t WHERE b = 2")
    False
    >>> fingerprint("/*+ SeqScan(t) */ SELECT a FROM t")
    '/*+ SeqScan(t) */ SELECT a FROM t'
    """
    if "--" in query or "/*" in query:
        return query
    try:
        return str(pglast.prettify(query))
    except Exception:  # noqa: BLE001 - unparseable text is its own key; the guard reports it
        return query


def model_prompt(query: str, catalog: Catalog, original: OriginalProfile, shown: list[Retrieved]) -> Prompt:
    """The rewrite prompt: schema, the original's plan (its generic plan for `$n`), demonstrations."""
    examples = [prompts.Example(r.demonstration.original_sql, r.demonstration.rewritten_sql,
                                r.demonstration.speedup) for r in shown]
    plan = original.generic_plan or original.plan
    return Prompt(query, catalog, prompts.rewrite_messages(query, catalog, plan, examples))


def pretty(sql: str) -> str:
    """PostgreSQL's grammar, printed one clause per line (the text itself if it does not parse)."""
    try:
        return str(pglast.prettify(sql, comma_at_eoln=True, special_functions=True))
    except Exception:  # noqa: BLE001 - pretty-printing is a convenience, never a failure
        return sql.strip()


def pretty_diff(before: str, after: str) -> dict[str, str]:
    """Both texts pretty-printed, and a unified diff of the two (for review in psql or a diff tool)."""
    a, b = pretty(before), pretty(after)
    diff = "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), "original", "rewrite", lineterm=""))
    return {"before": a, "after": b, "diff": diff}


def evidence_json(result: RewriteResult) -> str:
    return json.dumps(result.evidence(), default=str)
