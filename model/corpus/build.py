"""Building a SQL-MCTS corpus (LASER §4): seeds → MCTS per seed → consolidation → JSONL pairs.

Every statement runs through the verifier's read-only sessions (READ ONLY transactions, statement
timeouts, rolled back), so nothing here can write to the database it is pointed at.

Output, one JSON object per line (see ``Pair``), and beside it ``<out>.schema.json`` (the schema
manifest: tables, columns, keys, row estimates) so a trainer can render prompts without the
database. Resumable: ``<out>.seeds.jsonl`` records each finished seed; a resumed run skips those
and never writes a pair already in the output (by normalized slow query).
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from sqlglot import exp

from model.corpus import structure
from model.corpus.evaluate import PoolEvaluator, pair_config, simulation_config
from model.corpus.mcts import Node
from model.corpus.search import SearchConfig, grow, slow_nodes
from model.corpus.seeds import SeedShape, generate, read_schema
from model.pool import Job, VerifierPool
from sidecar.catalog import Catalog, load_catalog
from sidecar.rules._scope import conjuncts
from sidecar.verify import GuardError, OriginalError, OutcomeStatus, ReadOnlySession, Verifier, guard
from sidecar.verify.session import SessionError


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
    random_seed: int = 0
    validation_share: float = 0.1
    """Share of seeds (by a hash of the seed) whose pairs go to the validation split."""
    time_budget_s: float | None = None
    """Start no new seed after this many seconds."""
    search: SearchConfig = field(default_factory=SearchConfig)

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
class Summary:
    seeds_done: int = 0
    seeds_skipped: list[tuple[str, str]] = field(default_factory=list)
    """(name, reason) for every seed not used."""
    variants: int = 0
    candidates: int = 0
    """Variants at least min_slowdown slower in the simulation, or cut at Tmax."""
    pairs: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Candidates not kept, by reason."""
    elapsed_s: float = 0.0
    seconds: dict[str, float] = field(default_factory=lambda: {"admit": 0.0, "search": 0.0, "re-verify": 0.0})
    """Where the time went: admitting seeds, the search (simulation), re-verifying candidates."""


# -- seeds --------------------------------------------------------------------------------------

def load_seed_queries(path: Path) -> list[SeedQuery]:
    """Seeds from a directory of ``.sql`` files (one statement each, named by the file) or a JSON
    list (strings, or objects with "sql" and optionally "name")."""
    if path.is_dir():
        files = sorted(path.glob("*.sql"))
        if not files:
            raise CorpusError(f"{path}: no .sql files")
        return [SeedQuery(f.stem, f.read_text()) for f in files]
    if not path.is_file():
        raise CorpusError(f"{path}: no such file or directory")
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path}: not JSON ({exc})") from None
    if not isinstance(items, list):
        raise CorpusError(f"{path}: expected a JSON list of queries")
    seeds = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            seeds.append(SeedQuery(f"q{index + 1:04d}", item))
        elif isinstance(item, dict) and isinstance(item.get("sql"), str):
            seeds.append(SeedQuery(str(item.get("name") or f"q{index + 1:04d}"), item["sql"]))
        else:
            raise CorpusError(f"{path}: item {index} is neither a string nor an object with \"sql\"")
    return seeds


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
    if not profile.warmup.rows:
        return "returns no rows", 0.0
    again = verifier.check_equivalence(profile, statement)
    if again.status != OutcomeStatus.EQUIVALENT:
        return f"its result is not deterministic: {again.detail}", 0.0
    return None, profile.warmup.elapsed_ms


# -- the schema ---------------------------------------------------------------------------------

_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname <> 'laser'
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY 1, 2
"""


def schema_manifest(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Every table the role can read (outside the system and laser schemas): columns, keys, indexes
    and row estimates; with ``schema_id``, a hash of those facts."""
    names = [(schema, name) for schema, name in conn.execute(_USER_TABLES).fetchall()]
    catalog = load_catalog(conn, names)
    tables = {key: {"columns": [[c.name, c.data_type, c.nullable] for c in table.columns],
                    "primary_key": list(table.primary_key), "unique_keys": [list(k) for k in table.unique_keys],
                    "indexes": [list(i) for i in table.indexes], "rows": table.row_estimate}
              for key, table in sorted(catalog.tables.items())}
    if not tables:
        raise CorpusError("the database has no tables this role can read: nothing to build seeds on")
    digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()[:16]
    return {"schema_id": digest, "database": conn.info.dbname, "tables": tables}


def catalog_of(conn: psycopg.Connection[Any], statement_tables: Iterable[tuple[str | None, str]]) -> Catalog:
    return load_catalog(conn, list(statement_tables))


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


# -- the run ------------------------------------------------------------------------------------

def build(dsn: str, seeds: Sequence[SeedQuery], out: Path, config: CorpusConfig = CorpusConfig(),
          resume: bool = False, log: IO[str] = sys.stderr, generate_seeds: int = 0,
          shape: SeedShape = SeedShape()) -> Summary:
    """Grow a tree from every admitted seed and append the kept pairs to ``out``.

    ``generate_seeds``: with no ``seeds``, generate candidates from the schema (``seeds.generate``,
    reproducible from ``config.random_seed``) until this many are admitted and grown."""
    if not seeds and generate_seeds <= 0:
        raise CorpusError("no seeds: give seed queries, or a number of seeds to generate from the schema")
    started = time.monotonic()
    summary = Summary()
    done_path = out.with_name(out.name + ".seeds.jsonl")
    if out.exists() and not resume:
        raise CorpusError(f"{out} exists: pass --resume to continue it, or choose another file")
    done = _finished_seeds(done_path) if resume else set()
    written = _written_pairs(out) if resume else set()
    try:
        session = ReadOnlySession.connect(dsn, None, statement_timeout_ms=config.timeout_ms)
    except SessionError as exc:
        raise CorpusError(str(exc)) from None
    with session:
        manifest = schema_manifest(session.connection)
        if not seeds:
            seeds = _generated(session.connection, generate_seeds, config.random_seed, shape)
            print(f"generated {len(seeds)} candidate seeds from the schema", file=log, flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_name(out.name + ".schema.json").write_text(json.dumps(manifest, indent=1) + "\n")
        admitting = Verifier(session, simulation_config(config.seed_timeout_ms))
        with VerifierPool(dsn, workers=config.workers, config=simulation_config(config.timeout_ms)) as pool, \
                out.open("a") as pairs_file, done_path.open("a") as done_file:
            for index, seed in enumerate(seeds, 1):
                key = structure.normalized(seed.sql) if _parses(seed.sql) else seed.sql
                if key in done:
                    continue
                if generate_seeds and summary.seeds_done >= generate_seeds:
                    break
                if config.time_budget_s is not None and time.monotonic() - started > config.time_budget_s:
                    print(f"time budget of {config.time_budget_s:.0f} s spent: stopping before seed {seed.name}",
                          file=log, flush=True)
                    break
                clock = time.monotonic()
                reason, seed_ms = admit(admitting, seed)
                summary.seconds["admit"] += time.monotonic() - clock
                if reason is not None:
                    summary.seeds_skipped.append((seed.name, reason))
                    print(f"[{index}/{len(seeds)}] {seed.name}: skipped, {reason}", file=log, flush=True)
                    _mark_done(done_file, key, seed, reason)
                    continue
                kept = _grow_seed(seed, config.cap_ms(seed_ms), session, pool, manifest, config, summary, written)
                for pair in kept:
                    pairs_file.write(json.dumps(asdict(pair)) + "\n")
                pairs_file.flush()
                _mark_done(done_file, key, seed, None)
                summary.seeds_done += 1
                summary.elapsed_s = time.monotonic() - started
                best = max((p.slowdown for p in kept), default=0.0)
                print(f"[{index}/{len(seeds)}] {seed.name}: {len(kept)} pair(s) kept"
                      + (f" (best {best:.1f}x)" if kept else "")
                      + f"; {summary.pairs} pairs, {summary.variants} variants in {summary.elapsed_s:.0f} s",
                      file=log, flush=True)
    summary.elapsed_s = time.monotonic() - started
    return summary


def _generated(conn: psycopg.Connection[Any], wanted: int, random_seed: int, shape: SeedShape) -> list[SeedQuery]:
    """Candidates for ``wanted`` seeds (four times as many: some return no rows)."""
    names = [(schema, name) for schema, name in conn.execute(_USER_TABLES).fetchall()]
    schema = read_schema(conn, load_catalog(conn, names))
    statements = generate(schema, wanted * 4, random.Random(f"seeds:{random_seed}"), shape)
    if not statements:
        raise CorpusError("no table has a foreign key, declared or inferred: cannot generate joined seeds")
    return [SeedQuery(f"gen{index:04d}", sql) for index, sql in enumerate(statements, 1)]


def _grow_seed(seed: SeedQuery, cap_ms: int, session: ReadOnlySession, pool: VerifierPool, manifest: dict[str, Any],
               config: CorpusConfig, summary: Summary, written: set[str]) -> list[Pair]:
    statement = guard(seed.sql)
    catalog = catalog_of(session.connection, statement.tables)
    rng = random.Random(f"{config.random_seed}:{structure.normalized(statement.text)}")
    clock = time.monotonic()
    root, stats = grow(statement.text, catalog, PoolEvaluator(pool, statement.text, cap_ms), rng,
                       config.search)
    summary.seconds["search"] += time.monotonic() - clock
    summary.variants += stats.variants
    candidates = _distinct(slow_nodes(root, config.min_slowdown, timed_out=True), written)
    summary.candidates += len(candidates)
    kept: list[Pair] = []
    survivors = []
    for node in candidates:
        reason = artificial(statement.text, node.sql)
        if reason is not None:
            summary.dropped[reason] = summary.dropped.get(reason, 0) + 1
        else:
            survivors.append(node)
    check = pair_config(cap_ms)
    clock = time.monotonic()
    outcomes = pool.verify_many([Job(node.sql, statement.text, config=check) for node in survivors])
    summary.seconds["re-verify"] += time.monotonic() - clock
    split = split_of(seed, config.validation_share)
    for node, outcome in zip(survivors, outcomes, strict=True):
        if outcome.status != OutcomeStatus.FASTER or outcome.speedup < config.min_slowdown:
            reason = f"re-verification: {outcome.status.value}"
            summary.dropped[reason] = summary.dropped.get(reason, 0) + 1
            continue
        evidence = outcome.evidence
        summary_evidence: dict[str, Any] = {"detail": outcome.detail}
        if evidence.equivalence is not None:
            summary_evidence["equivalence"] = evidence.equivalence.method
            summary_evidence["rows"] = evidence.equivalence.rows
        if evidence.perturbed_instances is not None:
            summary_evidence["perturbed_instances"] = len(evidence.perturbed_instances.tried)
        kept.append(Pair(
            schema_id=manifest["schema_id"], database=manifest["database"], seed_name=seed.name,
            seed_sql=statement.text, slow_sql=node.sql, path=node.path, seed_ms=round(outcome.candidate_ms, 3),
            slow_ms=round(outcome.original_ms, 3), slowdown=round(outcome.speedup, 3),
            slowdown_is_lower_bound=evidence.speedup_is_lower_bound, evidence=summary_evidence, split=split))
        written.add(structure.normalized(node.sql))
    summary.pairs += len(kept)
    return kept


def _distinct(nodes: list[Node], written: set[str]) -> list[Node]:
    seen = set(written)
    result = []
    for node in nodes:
        key = structure.normalized(node.sql)
        if key not in seen:
            seen.add(key)
            result.append(node)
    return result


def _parses(sql: str) -> bool:
    try:
        structure.parse(sql)
    except ValueError:
        return False
    return True


def _finished_seeds(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()}


def _written_pairs(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {structure.normalized(json.loads(line)["slow_sql"]) for line in path.read_text().splitlines()
            if line.strip()}


def _mark_done(file: IO[str], key: str, seed: SeedQuery, skipped: str | None) -> None:
    file.write(json.dumps({"key": key, "name": seed.name, "skipped": skipped}) + "\n")
    file.flush()
