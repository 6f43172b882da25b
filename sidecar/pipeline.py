"""The rewrite pipeline: one request, top to bottom.

    request → guard and parse, once (sidecar.verify.guard)
            → a read-only session as the caller, the original's profile per parameter set (verify)
            → the catalog of the tables it reads (catalog)
            → candidates: the rules' search (backends.rules), then the model's drafts with
              EXPLAIN-driven self-correction (prompting) — each verified as it comes (verify)
            → the fastest verified candidate, or the original (answer)

The pipeline owns the backends, the demonstrations and the answer cache; everything that decides
lives in the verifier.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pglast
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sidecar import answer
from sidecar.answer import Attempt, RewriteResult
from sidecar.backends import load_backend
from sidecar.backends.base import Backend, Prompt
from sidecar.backends.rules import RulesBackend, completion
from sidecar.cancellation import Cancellation
from sidecar.catalog import Catalog, load_catalog
from sidecar.config import SidecarConfig
from sidecar.prompting import prompts
from sidecar.prompting.retrieval import Demonstration, DemoPool, Embedder, Retrieved, load_demonstrations
from sidecar.prompting.selfcorrect import Draft, GenerationReport, SelfCorrector
from sidecar.verify import (
    Evidence,
    GuardError,
    Outcome,
    OutcomeStatus,
    ReadOnlySession,
    Statement,
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


class RequestError(Exception):
    """The request itself is unusable (no database or role named, a malformed option): the client
    must change it. Bad SQL is a GuardError or an OriginalError instead."""


class WrongServer(Exception):
    """The request is meant for another PostgreSQL server than the one the sidecar verifies on."""


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
    server_id: str = ""
    """The system identifier of the server the caller means (pg_control_system()); when given, the
    session's server must have it (WrongServer otherwise). In-process callers leave it empty."""
    server: str = ""
    """How the caller reached that server (e.g. "host=db1 port=5432"), for the WrongServer message."""
    cancellation: Cancellation | None = field(default=None, compare=False)
    """Set when the caller has gone away: the request stops as at its deadline, statements interrupted."""

    def __post_init__(self) -> None:
        if self.timed_runs is not None and not 1 <= self.timed_runs <= 50:
            raise RequestError("timed_runs must be between 1 and 50")
        if self.dead_zone is not None and not 0.0 <= self.dead_zone < 1.0:
            raise RequestError("dead_zone must be in [0, 1)")
        for name in ("max_candidates", "statement_timeout_ms", "min_parameter_sets"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise RequestError(f"{name} must be positive")

    def given_sets(self) -> list[dict[int, str | None]]:
        return [dict(values) for values in self.parameter_sets]

    def past_deadline(self) -> bool:
        """The caller has stopped waiting: its deadline passed, or it went away."""
        if self.cancellation is not None and self.cancellation.cancelled:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline


@dataclass(frozen=True)
class Context:
    """What every candidate of one request is verified against."""

    given: str
    """The original as the caller sent it (pg_stat_statements' typed placeholders normalized)."""
    statement: Statement
    """The original, admitted by the guard (parsed once)."""
    verifier: Verifier
    originals: list[OriginalProfile]
    """One profile per parameter set (one for a statement without `$n`)."""
    catalog: Catalog
    options: RequestOptions
    limit: int
    """Candidates verified per source."""

    @property
    def original(self) -> OriginalProfile:
        return self.originals[0]

    def verify(self, sql: str) -> Outcome:
        return self.verifier.verify_sets(self.originals, sql)


@dataclass
class Harvest:
    """What one candidate source produced for a request: its verified attempts and what it spent."""

    attempts: list[Attempt] = field(default_factory=list)
    generation_ms: float = 0.0
    search: dict[str, Any] | None = None
    report: GenerationReport | None = None
    shown: list[Retrieved] = field(default_factory=list)


class VerifierPlanner:
    """The rules backend's Planner: EXPLAIN estimates through the verifier, as the caller."""

    def __init__(self, context: Context) -> None:
        self._verifier = context.verifier
        self._original = context.original

    def cost(self, sql: str) -> float | None:
        estimate = self._verifier.estimate(self._original, sql)
        return None if estimate is None else estimate.cost

    def rows(self, sql: str) -> float | None:
        estimate = self._verifier.estimate(self._original, sql)
        return None if estimate is None else estimate.rows


class RewritePipeline:
    """Owns the backends and the answer cache; opens one read-only session per request."""

    def __init__(self, config: SidecarConfig, *, model: Backend | None = None, rules: RulesBackend | None = None,
                 demonstrations: DemoPool | None = None) -> None:
        """`model` writes candidates from prompts; `rules` searches the rules' rewrites; either or
        both (one candidate pool). `demonstrations` ranks retrieved examples for model prompts; each
        database's pool is the `laser.demonstrations` view plus this sidecar's own wins."""
        if model is None and rules is None:
            raise ValueError("a pipeline needs a model backend, the rules backend, or both")
        self.config = config
        self.model = model
        self.rules = rules
        self.demonstrations = demonstrations
        self._own_wins: dict[str, list[Demonstration]] = {}
        self._cache: dict[tuple[Any, ...], tuple[float, RewriteResult]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: SidecarConfig) -> RewritePipeline:
        """The backend the configuration names (its model loaded), the rules beside a model, and the
        demonstration pool for model prompts. Raises BackendError when the model cannot be loaded."""
        if config.backend == "rules":
            return cls(config, rules=RulesBackend())
        model = load_backend(config.backend, config.model_dir, config.device, config.adapter)
        pool = None
        if config.demonstrations > 0:
            embedder = Embedder()
            if not embedder.available:
                log.warning("demonstrations ranked by structure only: %s", embedder.unavailable_reason)
            pool = DemoPool(embedder if embedder.available else None)
        return cls(config, model=model, rules=RulesBackend() if config.with_rules else None, demonstrations=pool)

    @property
    def uses_model(self) -> bool:
        return self.model is not None

    @property
    def backend(self) -> Backend:
        """The backend that describes this sidecar (ModelInfo): the model when there is one."""
        if self.model is not None:
            return self.model
        assert self.rules is not None
        return self.rules

    @property
    def backend_name(self) -> str:
        if self.model is None:
            return "rules"
        return self.model.name + ("+rules" if self.rules is not None else "")

    # -- requests ---------------------------------------------------------------------------------

    def rewrite(self, query: str, database: str, role: str, login_role: str = "",
                options: RequestOptions = RequestOptions()) -> RewriteResult:
        """Best verified rewrite of `query`, run as `role` in `database`.

        Raises GuardError / OriginalError (bad query), RequestError, PermissionRefused,
        DatabaseUnavailable.
        """
        cached = self.cached_answer(query, database, role, login_role, options)
        if cached is not None:
            return cached
        query = parameters.normalize_placeholders(query)
        statement = guard(query)  # refuse before touching the database
        result = self._rewrite(query, statement, database, role, login_role, options)
        if not options.past_deadline():  # an answer cut short (or for a caller gone) is not cached
            self._store(_cache_key(query, database, role, login_role, options), result)
        return result

    def cached_answer(self, query: str, database: str, role: str, login_role: str = "",
                      options: RequestOptions = RequestOptions()) -> RewriteResult | None:
        """A recent answer to the same request, for the text as this caller wrote it; None when there is
        none (or `options.no_cache`). Touches no database; GuardError for a query the guard refuses."""
        query = parameters.normalize_placeholders(query)
        guard(query)
        if options.no_cache:
            return None
        cached = self._cached(_cache_key(query, database, role, login_role, options))
        if cached is None:
            return None
        rewritten = cached.rewritten_sql if cached.status == answer.IMPROVED else query
        return dataclasses.replace(cached, cached=True, original_sql=query, rewritten_sql=rewritten)

    def _rewrite(self, query: str, statement: Statement, database: str, role: str, login_role: str,
                 options: RequestOptions) -> RewriteResult:
        started = time.perf_counter()
        with self._context(query, statement, database, role, login_role, options) as (context, session):
            rules = self._rule_attempts(context) if self.rules is not None else Harvest()
            model = Harvest()
            if self.model is not None:
                already = {a.sql for a in rules.attempts}
                model = self._model_attempts(self.model, context, self._retrieve(session, database, statement.text),
                                             already)
            verified_as = session.role or session.connection.info.user
        generation_ms = rules.generation_ms + model.generation_ms
        attempts = rules.attempts + model.attempts
        result = self._answer(context, attempts, verified_as, rules, model)
        result.generation_ms = generation_ms
        result.verification_ms = (time.perf_counter() - started) * 1000.0 - generation_ms
        if result.status == answer.IMPROVED:
            chosen = result.chosen()
            assert chosen is not None
            self._remember(database, statement.text, chosen)
        return result

    @contextmanager
    def _context(self, query: str, statement: Statement, database: str, role: str, login_role: str,
                 options: RequestOptions) -> Iterator[tuple[Context, ReadOnlySession]]:
        """A read-only session as the caller, the original's profiles and the catalog."""
        verifier_config = self._verifier_config(options)
        try:
            opened = self._session(database, role, login_role, verifier_config)
        except SessionError:
            self._check_server_apart(options)  # "another server" explains a missing database or role best
            raise
        with opened as session, self._watched(session, options):
            self._check_server(session.connection, options)
            verifier = Verifier(session, verifier_config)
            originals = verifier.prepare_sets(statement, options.given_sets(), self._min_sets(options))
            catalog = load_catalog(session.connection, statement.tables)
            limit = options.max_candidates or self.config.max_candidates
            yield Context(query, statement, verifier, originals, catalog, options, limit), session

    def _answer(self, context: Context, attempts: list[Attempt], verified_as: str, rules: Harvest,
                model: Harvest) -> RewriteResult:
        original = context.original
        chosen = answer.best(attempts)
        refused = model.report.refused if model.report is not None else []
        result = RewriteResult(
            status=answer.IMPROVED if chosen else answer.NO_IMPROVEMENT,
            original_sql=context.given,
            rewritten_sql=chosen.sql if chosen else context.given,
            message=answer.message(chosen, attempts, len(context.originals),
                context.verifier.config.statement_timeout_ms,
                                   self.backend.name, refused),
            backend=self.backend_name,
            speedup=chosen.outcome.speedup if chosen else 1.0,
            original_ms=chosen.outcome.original_ms if chosen else original.warmup.elapsed_ms,
            rewrite_ms=chosen.outcome.candidate_ms if chosen else original.warmup.elapsed_ms,
            source=chosen.source if chosen else "",
            attempts=attempts,
            measured_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            verified_as=verified_as,
            original_example=original.sql,
            model=self.backend.model,
            backend_version=self.backend.version,
            generation=model.report.summary() if model.report is not None else None,
            search=rules.search,
            demonstrations=[_shown(r) for r in model.shown],
        )
        return result

    def _rule_attempts(self, context: Context) -> Harvest:
        """The rules' beam search (ranked by the planner, within search_budget_s), each candidate verified."""
        assert self.rules is not None
        started = time.perf_counter()
        deadline = time.monotonic() + self.config.search_budget_s
        if context.options.deadline is not None:
            deadline = min(deadline, context.options.deadline)
        search = self.rules.search(context.statement.text, context.catalog, VerifierPlanner(context), deadline)
        harvest = Harvest(generation_ms=(time.perf_counter() - started) * 1000.0, search=search.report.to_json())
        seen: set[str] = set()
        for candidate in search.candidates[: context.limit]:
            if context.options.past_deadline():
                break  # the caller has stopped waiting
            if candidate.sql in seen:
                continue
            seen.add(candidate.sql)
            found = completion(candidate)
            harvest.attempts.append(Attempt(found.text, found.source, context.verify(found.text),
                                            generation=dict(found.details) or None))
        return harvest

    def _model_attempts(self, model: Backend, context: Context, shown: list[Retrieved],
                        already: set[str]) -> Harvest:
        """Prompt the model, self-correct on EXPLAIN errors, verify what survives, feed one
        counterexample back for each non-equivalent answer; every draft becomes an attempt."""
        prompt = model_prompt(context.statement.text, context.catalog, context.original, shown)

        def check(sql: str) -> tuple[str, str] | None:
            try:
                statement = guard(sql)
            except GuardError as exc:
                return "guard", str(exc)
            error = context.verifier.explain_error(context.original, statement)
            return None if error is None else ("explain", error)

        corrector = SelfCorrector(model, check, max_rounds=self.config.repair_rounds,
                                  temperature=self.config.temperature, max_tokens=self.config.max_new_tokens,
                                  deadline=context.options.deadline)
        seen = set(already)

        def verify(ready: list[Draft]) -> list[tuple[Draft, Outcome]]:
            verified = []
            for draft in ready:
                assert draft.sql is not None
                if context.options.past_deadline() or draft.sql in seen:
                    continue
                seen.add(draft.sql)
                verified.append((draft, context.verify(draft.sql)))
            return verified

        verified = verify(corrector.generate(prompt, n=context.limit))
        if self.config.counterexample_feedback:
            for draft, outcome in list(verified):
                if (outcome.status is OutcomeStatus.NOT_EQUIVALENT and outcome.counterexample
                        and not context.options.past_deadline()):
                    verified += verify(corrector.feedback(prompt, draft, outcome.counterexample, outcome.detail))
        outcomes = {id(draft): outcome for draft, outcome in verified}
        harvest = Harvest(generation_ms=corrector.report.generation_s * 1000.0, report=corrector.report,
                          shown=shown)
        for index, draft in enumerate(corrector.report.drafts):
            found = outcomes.get(id(draft)) or _unverified(draft)
            if found is not None:
                harvest.attempts.append(Attempt(draft.sql or draft.completion.text, draft.completion.source, found,
                                                generation={"draft": index, **draft.to_json()}))
        return harvest

    def prompt(self, query: str, database: str, role: str, login_role: str = "") -> Prompt:
        """The prompt a model backend gets for `query` (e.g. to build fine-tuning data that matches
        serving exactly, or to inspect it), with the demonstrations retrieved right now."""
        query = parameters.normalize_placeholders(query)
        with self._context(query, guard(query), database, role, login_role, RequestOptions()) as (context, session):
            shown = self._retrieve(session, database, context.statement.text)
        return model_prompt(context.statement.text, context.catalog, context.original, shown)

    def verify(self, original: str, candidate: str, database: str, role: str, login_role: str = "",
               options: RequestOptions = RequestOptions()) -> Outcome:
        """Verify one given candidate against `original` (on each parameter set, if it has `$n`)."""
        original = parameters.normalize_placeholders(original)
        with self._context(original, guard(original), database, role, login_role, options) as (context, _):
            return context.verify(parameters.normalize_placeholders(candidate))

    # -- sessions, settings, cache, demonstrations -------------------------------------------------

    def _verifier_config(self, options: RequestOptions) -> VerifierConfig:
        timeout_ms = options.statement_timeout_ms or self.config.statement_timeout_ms
        if options.deadline is not None:
            timeout_ms = max(1, min(timeout_ms, int((options.deadline - time.monotonic()) * 1000)))
        return VerifierConfig(
            statement_timeout_ms=timeout_ms,
            timed_runs=options.timed_runs or self.config.timed_runs,
            dead_zone=self.config.dead_zone if options.dead_zone is None else options.dead_zone,
        )

    def _min_sets(self, options: RequestOptions) -> int:
        return options.min_parameter_sets or self.config.min_parameter_sets

    def _session(self, database: str, role: str, login_role: str,
                 verifier_config: VerifierConfig) -> ReadOnlySession:
        """A read-only session acting as the caller (see SidecarConfig.act_as)."""
        if not database:
            raise RequestError("the request names no database")
        if not role:
            raise RequestError("the request names no role")
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

    @contextmanager
    def _watched(self, session: ReadOnlySession, options: RequestOptions) -> Iterator[None]:
        """The session's statements are interrupted when the request is cancelled."""
        if options.cancellation is None:
            yield
            return
        with options.cancellation.watching(session.connection):
            yield

    def _check_server_apart(self, options: RequestOptions) -> None:
        """After a failed login: WrongServer when the sidecar's server is another than the request's
        (asked on the sidecar's own connection); nothing when that cannot be told."""
        if not options.server_id:
            return
        for database in ("postgres", "template1"):
            try:
                with psycopg.connect(make_conninfo(self.config.dsn, dbname=database), connect_timeout=5) as conn:
                    self._check_server(conn, options)
                    return
            except psycopg.Error:
                continue

    def _check_server(self, connection: psycopg.Connection[Any], options: RequestOptions) -> None:
        """WrongServer unless the connection's server is the one the request names (when it names one)."""
        if not options.server_id:
            return
        row = connection.execute(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()").fetchone()
        here = str(row[0]) if row else "unknown"
        if here != options.server_id:
            named = conninfo_to_dict(self.config.dsn)
            ours = " ".join(f"{k}={named[k]}" for k in ("host", "port") if named.get(k)) or "libpq's defaults"
            theirs = options.server or "the caller's server"
            raise WrongServer(
                f"the request is for the PostgreSQL server at {theirs} (system identifier {options.server_id}), "
                f"but this sidecar verifies on the server at {ours} (system identifier {here}); ask the sidecar "
                "that serves that server (laser.sidecar_address, --sidecar), or start one whose dsn reaches it")

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

    def _cached(self, key: tuple[Any, ...]) -> RewriteResult | None:
        with self._lock:
            hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < self.config.cache_ttl_s:
            return hit[1]
        return None

    def _store(self, key: tuple[Any, ...], result: RewriteResult) -> None:
        now = time.monotonic()
        with self._lock:
            self._cache[key] = (now, result)
            stale = [k for k, (at, _) in self._cache.items() if now - at >= self.config.cache_ttl_s]
            for k in stale:
                del self._cache[k]
            while len(self._cache) > MAX_CACHED_ANSWERS:  # oldest first (dicts keep insertion order)
                del self._cache[next(iter(self._cache))]

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


def _cache_key(query: str, database: str, role: str, login_role: str, options: RequestOptions) -> tuple[Any, ...]:
    """What makes two requests the same question (the server too: an answer is only ever stored after
    the server it names was checked)."""
    return (database, role, login_role, fingerprint(query), options.max_candidates, options.statement_timeout_ms,
            options.timed_runs, options.dead_zone, options.parameter_sets, options.min_parameter_sets,
            options.server_id)


def _unverified(draft: Draft) -> Outcome | None:
    """The outcome of a draft that never reached the verifier; None for one that needs no attempt
    (a duplicate of a candidate already verified, or cut off by the deadline)."""
    if draft.stage == "extraction":
        return Outcome(OutcomeStatus.EXTRACTION_FAIL, draft.error)
    if draft.stage == "guard":
        return Outcome(OutcomeStatus.GUARD_REFUSED, draft.error)
    if draft.stage:
        return Outcome(OutcomeStatus.EXEC_ERROR, draft.error, evidence=Evidence(stage=draft.stage))
    return None


def _shown(retrieved: Retrieved) -> dict[str, Any]:
    demo = retrieved.demonstration
    return {"original_sql": demo.original_sql, "speedup": demo.speedup, "origin": demo.origin,
            "score": round(retrieved.score, 4), "structural": round(retrieved.structural, 4),
            "cosine": None if retrieved.cosine is None else round(retrieved.cosine, 4)}


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


