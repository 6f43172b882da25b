"""One seed's work (LASER §4.2–4.3): admit it, grow its Monte Carlo tree, consolidate the slow
leaves into verified pairs. Everything runs on one database through read-only sessions, so a
grower can run in the driver (the local engine) or in a Ray actor next to a replica.
"""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlglot import exp

from model.corpus import structure
from model.corpus.evaluate import PoolEvaluator, pair_config, simulation_config
from model.corpus.mcts import Node
from model.corpus.mutation import ModelMutation
from model.corpus.search import SearchConfig, grow, slow_nodes
from model.corpus.slowdowns import SLOWDOWNS, Slowdown
from model.pool import InlineVerifier, Job, VerifierPool, Verifies
from sidecar.backends import load_backend
from sidecar.backends.errors import BackendError
from sidecar.catalog import load_catalog
from sidecar.rules._scope import conjuncts
from sidecar.verify import GuardError, OriginalError, Outcome, OutcomeStatus, ReadOnlySession, Verifier, guard


class CorpusError(Exception):
    """The corpus cannot be built as asked (bad seed file, unreachable database, empty schema)."""


@dataclass(frozen=True)
class SeedQuery:
    name: str
    sql: str


@dataclass(frozen=True)
class CorpusConfig:
    timeout_ms: int = 10_000
    """Tmax: the cap on every execution. A variant reaching it gets reward γ in the search; it is kept
    only when the verifier's beyond-the-cap check (sampled and perturbed instances) calls it
    equivalent, and its slowdown is then a lower bound (``slowdown_is_lower_bound``)."""
    cap_factor: float = 20.0
    """Each seed's variants are cut at ``cap_factor`` times the seed's own time (at least 1 s, at
    most ``timeout_ms``): a variant that much slower counts as timed out (reward γ) and, if kept, its
    slowdown is a lower bound. Keeps a tree of a 50 ms seed from spending ``timeout_ms`` per variant."""
    min_slowdown: float = 2.0
    """Keep pairs whose slow query is at least this many times slower than its seed (§4.3)."""
    workers: int = 2
    """Verifier processes of the local engine; Ray actors per database with ``--engine ray``."""
    random_seed: int = 0
    validation_share: float = 0.1
    """Share of seeds (by a hash of the seed) whose pairs go to the validation split."""
    time_budget_s: float | None = None
    """Start no new seed after this many seconds."""
    search: SearchConfig = field(default_factory=SearchConfig)
    backend: str = "rules"
    """"rules": the reverse optimizer's transformations only; "transformers" or "vllm": also
    free-form expansion by the model in ``model_dir`` (``model.corpus.mutation``)."""
    model_dir: str = ""
    device: str = "auto"
    model_temperature: float = 0.8
    """Sampling temperature of the model's mutations (LASER samples; 0 is greedy)."""

    @property
    def seed_timeout_ms(self) -> int:
        """A seed must finish within a quarter of Tmax, so that a 4x slower variant is still
        measured rather than cut (and admitting a hopeless seed costs little).

        >>> CorpusConfig(timeout_ms=10_000).seed_timeout_ms
        2500
        """
        return max(100, self.timeout_ms // 4)

    def cap_ms(self, seed_ms: float) -> int:
        """The per-seed cap on every execution of its variants.

        >>> CorpusConfig(timeout_ms=10_000).cap_ms(120.0), CorpusConfig(timeout_ms=10_000).cap_ms(3_000.0)
        (2400, 10000)
        """
        return int(min(self.timeout_ms, max(1_000.0, self.cap_factor * seed_ms)))

    def __post_init__(self) -> None:
        if self.cap_factor <= self.min_slowdown:
            raise ValueError("cap_factor must be above min_slowdown")
        if self.timeout_ms < 100 or self.min_slowdown <= 1.0 or not 0.0 <= self.validation_share < 1.0:
            raise ValueError("timeout_ms must be at least 100, min_slowdown above 1, validation_share in [0, 1)")
        if not 1 <= self.workers <= 64:
            raise ValueError("workers must be between 1 and 64")
        if self.backend not in ("rules", "transformers", "vllm"):
            raise ValueError(f"unknown backend {self.backend!r}: rules, transformers or vllm")
        if self.backend != "rules" and not self.model_dir:
            raise ValueError(f"the {self.backend} backend needs a model directory (--model-dir)")


@dataclass(frozen=True)
class Pair:
    """One line of the corpus: a slow query and the fast seed it came from."""

    schema_id: str
    database: str
    seed_name: str
    seed_sql: str
    slow_sql: str
    path: tuple[str, ...]
    """The transformations that made the slow query from the seed, in order."""
    seed_ms: float
    slow_ms: float
    slowdown: float
    slowdown_is_lower_bound: bool
    evidence: dict[str, Any]
    """The re-verification's summary: equivalence method, instances tried, timings."""
    split: str


@dataclass
class SeedResult:
    """What one seed gave: its pairs, or the reason it was skipped, and where the time went."""

    seed: SeedQuery
    skipped: str | None = None
    pairs: list[Pair] = field(default_factory=list)
    variants: int = 0
    candidates: int = 0
    """Variants at least min_slowdown slower in the simulation, or cut at the cap."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Candidates not kept, by reason."""
    seconds: dict[str, float] = field(default_factory=lambda: {"admit": 0.0, "search": 0.0, "re-verify": 0.0})
    worker: str = "local"
    """Which grower did the work (the database it verified on, for the Ray engine)."""
    model: dict[str, int] = field(default_factory=dict)
    """Free-form expansion on this seed: model calls, variants proposed, answers without usable SQL."""


class SeedGrower:
    """Grows seeds against one database: a read-only session for admitting seeds and reading the
    catalog, and a verifier pool for the simulation and the re-verification.

    ``workers`` > 1: a process pool; 1 with ``inline``: verification in this process."""

    def __init__(self, dsn: str, config: CorpusConfig, schema_id: str, database: str, workers: int,
                 inline: bool = False, name: str = "local") -> None:
        self.config = config
        self.schema_id = schema_id
        self.database = database
        self.name = name
        self.session = ReadOnlySession.connect(dsn, None, statement_timeout_ms=config.timeout_ms)
        self.admitting = Verifier(self.session, simulation_config(config.seed_timeout_ms))
        self.pool: Verifies = (InlineVerifier(dsn, config=simulation_config(config.timeout_ms)) if inline else
                               VerifierPool(dsn, workers=workers, config=simulation_config(config.timeout_ms)))
        self.mutation: ModelMutation | None = None
        self.strategies: tuple[Slowdown, ...] = SLOWDOWNS
        if config.backend != "rules":
            try:
                backend = load_backend(config.backend, config.model_dir, config.device)
            except BackendError as exc:
                self.close()
                raise CorpusError(f"the model cannot be loaded: {exc}") from None
            self.mutation = ModelMutation(backend, temperature=config.model_temperature)
            self.strategies = (*SLOWDOWNS, self.mutation)

    def close(self) -> None:
        self.pool.close()
        self.session.close()

    def grow(self, seed: SeedQuery, written: set[str]) -> SeedResult:
        """Admit ``seed``, grow its tree and return the verified pairs whose slow query is not in
        ``written`` (normalized)."""
        result = SeedResult(seed, worker=self.name)
        clock = time.monotonic()
        reason, seed_ms = admit(self.admitting, seed)
        result.seconds["admit"] += time.monotonic() - clock
        if reason is not None:
            result.skipped = reason
            return result
        cap_ms = self.config.cap_ms(seed_ms)
        statement = guard(seed.sql)
        catalog = load_catalog(self.session.connection, list(statement.tables))
        rng = random.Random(f"{self.config.random_seed}:{structure.normalized(statement.text)}")
        clock = time.monotonic()
        before = asdict(self.mutation.stats) if self.mutation is not None else {}
        root, stats = grow(statement.text, catalog, PoolEvaluator(self.pool, statement.text, cap_ms), rng,
                           self.config.search, strategies=self.strategies)
        result.seconds["search"] += time.monotonic() - clock
        if self.mutation is not None:
            result.model = {key: value - before[key] for key, value in asdict(self.mutation.stats).items()}
        result.variants = stats.variants
        candidates = distinct(slow_nodes(root, self.config.min_slowdown, timed_out=True), written)
        result.candidates = len(candidates)
        survivors = []
        for node in candidates:
            why = artificial(statement.text, node.sql)
            if why is not None:
                result.dropped[why] = result.dropped.get(why, 0) + 1
            else:
                survivors.append(node)
        check = pair_config(cap_ms)
        clock = time.monotonic()
        outcomes = self.pool.verify_many([Job(node.sql, statement.text, config=check) for node in survivors])
        result.seconds["re-verify"] += time.monotonic() - clock
        split = split_of(seed, self.config.validation_share)
        for node, outcome in zip(survivors, outcomes, strict=True):
            if outcome.status != OutcomeStatus.FASTER or outcome.speedup < self.config.min_slowdown:
                why = f"re-verification: {outcome.status.value}"
                result.dropped[why] = result.dropped.get(why, 0) + 1
                continue
            result.pairs.append(self._pair(seed, statement.text, node, outcome, split))
        return result

    def _pair(self, seed: SeedQuery, seed_sql: str, node: Node, outcome: Outcome, split: str) -> Pair:
        evidence = outcome.evidence
        summary: dict[str, Any] = {"detail": outcome.detail}
        if evidence.equivalence is not None:
            summary["equivalence"] = evidence.equivalence.method
            summary["rows"] = evidence.equivalence.rows
        if evidence.perturbed_instances is not None:
            summary["perturbed_instances"] = len(evidence.perturbed_instances.tried)
        return Pair(schema_id=self.schema_id, database=self.database, seed_name=seed.name, seed_sql=seed_sql,
                    slow_sql=node.sql, path=node.path, seed_ms=round(outcome.candidate_ms, 3),
                    slow_ms=round(outcome.original_ms, 3), slowdown=round(outcome.speedup, 3),
                    slowdown_is_lower_bound=evidence.speedup_is_lower_bound, evidence=summary, split=split)


def admit(verifier: Verifier, seed: SeedQuery) -> tuple[str | None, float]:
    """(None, its time in ms) when the seed can grow a tree: one read-only statement that runs
    within the cap, returns rows, and gives the same result when run again (no ties cut by ORDER
    BY … LIMIT); else (the reason it is skipped, 0)."""
    try:
        statement = guard(seed.sql)
        profile = verifier.prepare(statement)
    except GuardError as exc:
        return f"refused: {exc}", 0.0
    except OriginalError as exc:
        return f"does not run: {exc}", 0.0
    if profile.timed_out:
        return f"does not finish within {verifier.config.statement_timeout_ms} ms", 0.0
    if not profile.warmup.row_count:
        return "returns no rows", 0.0
    again = verifier.check_equivalence(profile, statement)
    if again.status != OutcomeStatus.EQUIVALENT:
        return f"its result is not deterministic: {again.detail}", 0.0
    return None, profile.warmup.elapsed_ms


# -- consolidation ------------------------------------------------------------------------------

def artificial(seed_sql: str, slow_sql: str) -> str | None:
    """Why the slow query's slowness is artificial (LASER §4.3's audit, made deterministic), or
    None: an ORDER BY inside a subquery without LIMIT, a ``SELECT * FROM (…)`` wrapper, or a
    predicate repeated verbatim in one WHERE, when the seed did not have it already.

    >>> artificial("SELECT a FROM t WHERE b = 1", "SELECT * FROM (SELECT a FROM t WHERE b = 1) AS w")
    'a SELECT * FROM (...) wrapper'
    >>> artificial("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b = 1 AND b = 1")
    'a predicate repeated verbatim'
    >>> artificial("SELECT a FROM t WHERE b = 1", "SELECT a FROM t WHERE b + 0 = 1") is None
    True
    """
    slow, seed = structure.parse(slow_sql), structure.parse(seed_sql)
    for check, reason in ((_ordered_subquery, "an ORDER BY inside a subquery"),
                          (_star_wrapper, "a SELECT * FROM (...) wrapper"),
                          (_repeated_predicate, "a predicate repeated verbatim")):
        if check(slow) and not check(seed):
            return reason
    return None


def _ordered_subquery(tree: exp.Expr) -> bool:
    return any(s.args.get("order") and not s.args.get("limit") for s in tree.find_all(exp.Select)
               if s is not tree and not isinstance(s.parent, exp.SetOperation))


def _star_wrapper(tree: exp.Expr) -> bool:
    for select in tree.find_all(exp.Select):
        from_ = select.args.get("from_")
        if (from_ is not None and isinstance(from_.this, exp.Subquery) and not select.args.get("joins")
                and not select.args.get("where") and len(select.expressions) == 1
                and isinstance(select.expressions[0], exp.Star)):
            return True
    return False


def _repeated_predicate(tree: exp.Expr) -> bool:
    for where in tree.find_all(exp.Where):
        texts = [part.sql(dialect="postgres") for part in conjuncts(where.this)]
        if len(texts) != len(set(texts)):
            return True
    return False


def split_of(seed: SeedQuery, share: float) -> str:
    """"train" or "validation", decided by the seed alone (so no seed is in both).

    >>> split_of(SeedQuery("q1", "SELECT 1"), 0.0)
    'train'
    """
    bucket = int(hashlib.sha256(structure.normalized(seed.sql).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if bucket < share else "train"


def distinct(nodes: list[Node], written: set[str]) -> list[Node]:
    """The nodes whose normalized SQL is new (not written, not seen earlier in the list)."""
    seen = set(written)
    result = []
    for node in nodes:
        key = structure.normalized(node.sql)
        if key not in seen:
            seen.add(key)
            result.append(node)
    return result
