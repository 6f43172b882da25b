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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from model.corpus import structure
from model.corpus.engine import Decision, Engine, LocalEngine, RayEngine
from model.corpus.grower import CorpusConfig, CorpusError, Pair, SeedQuery, SeedResult
from model.corpus.seeds import SeedShape, generate, read_schema
from sidecar.catalog import load_catalog
from sidecar.verify import ReadOnlySession
from sidecar.verify.session import SessionError

__all__ = ["CorpusConfig", "CorpusError", "Pair", "SeedQuery", "Summary", "build", "load_seed_queries",
           "schema_manifest"]


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
    """Where the time went: admitting seeds, the search (simulation), re-verifying candidates
    (summed over workers: with the Ray engine it can exceed the wall time)."""
    per_worker: dict[str, int] = field(default_factory=dict)
    """Seeds grown by each worker (the database it verified on, for the Ray engine)."""
    model: dict[str, int] = field(default_factory=dict)
    """Free-form expansion, summed over seeds (``model.corpus.mutation.MutationStats``)."""


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


# -- the schema ---------------------------------------------------------------------------------

_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname <> 'laser'
  AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')
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


# -- the run ------------------------------------------------------------------------------------

def build(dsn: str, seeds: Sequence[SeedQuery], out: Path, config: CorpusConfig = CorpusConfig(),
          resume: bool = False, log: IO[str] = sys.stderr, generate_seeds: int = 0,
          shape: SeedShape = SeedShape(), engine: str = "local", replicas: Sequence[str] = (),
          ray_address: str | None = None) -> Summary:
    """Grow a tree from every admitted seed and append the kept pairs to ``out``.

    ``generate_seeds``: with no ``seeds``, generate candidates from the schema (``seeds.generate``,
    reproducible from ``config.random_seed``) until this many are admitted and grown.
    ``engine``: "local" (this process and its verifier pool) or "ray" (Ray actors on ``dsn`` and
    on each of ``replicas``, which must hold the same schema)."""
    if not seeds and generate_seeds <= 0:
        raise CorpusError("no seeds: give seed queries, or a number of seeds to generate from the schema")
    if engine not in ("local", "ray"):
        raise CorpusError(f"unknown engine {engine!r}: local or ray")
    if replicas and engine != "ray":
        raise CorpusError("replicas are used by --engine ray only")
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
    todo = [(index, seed) for index, seed in enumerate(seeds, 1) if _key(seed) not in done]
    position = {(seed.name, seed.sql): index for index, seed in todo}  # results may be copies (Ray)

    def want(seed: SeedQuery, in_flight: int) -> Decision:
        if generate_seeds and summary.seeds_done + in_flight >= generate_seeds:
            return "wait" if summary.seeds_done < generate_seeds else "stop"
        if config.time_budget_s is not None and time.monotonic() - started > config.time_budget_s:
            print(f"time budget of {config.time_budget_s:.0f} s spent: stopping before seed {seed.name}",
                  file=log, flush=True)
            return "stop"
        return "go"

    runner: Engine = (LocalEngine(dsn, config, manifest["schema_id"], manifest["database"]) if engine == "local"
                      else RayEngine([dsn, *replicas], config, manifest["schema_id"], manifest["database"],
                                     ray_address))
    try:
        with out.open("a") as pairs_file, done_path.open("a") as done_file:
            for result in runner.run((seed for _, seed in todo), want, written):
                _record(result, summary, written)
                for pair in result.pairs:
                    pairs_file.write(json.dumps(asdict(pair)) + "\n")
                pairs_file.flush()
                _mark_done(done_file, _key(result.seed), result.seed, result.skipped)
                summary.elapsed_s = time.monotonic() - started
                label = f"[{position[(result.seed.name, result.seed.sql)]}/{len(seeds)}] {result.seed.name}"
                if result.skipped is not None:
                    print(f"{label}: skipped, {result.skipped}", file=log, flush=True)
                    continue
                best = max((p.slowdown for p in result.pairs), default=0.0)
                print(f"{label}: {len(result.pairs)} pair(s) kept" + (f" (best {best:.1f}x)" if result.pairs else "")
                      + (f" on {result.worker}" if engine == "ray" else "")
                      + f"; {summary.pairs} pairs, {summary.variants} variants in {summary.elapsed_s:.0f} s",
                      file=log, flush=True)
    finally:
        runner.close()
    summary.elapsed_s = time.monotonic() - started
    return summary


def _record(result: SeedResult, summary: Summary, written: set[str]) -> None:
    """Add a seed's result to the summary; pairs another seed already gave are dropped (with
    parallel seeds, each saw ``written`` as it was when it started)."""
    for part, seconds in result.seconds.items():
        summary.seconds[part] = summary.seconds.get(part, 0.0) + seconds
    for reason, count in result.dropped.items():
        summary.dropped[reason] = summary.dropped.get(reason, 0) + count
    for key, count in result.model.items():
        summary.model[key] = summary.model.get(key, 0) + count
    if result.skipped is not None:
        summary.seeds_skipped.append((result.seed.name, result.skipped))
        return
    summary.seeds_done += 1
    summary.variants += result.variants
    summary.candidates += result.candidates
    fresh = []
    for pair in result.pairs:
        key = structure.normalized(pair.slow_sql)
        if key in written:
            summary.dropped["the same slow query as an earlier pair"] = (
                summary.dropped.get("the same slow query as an earlier pair", 0) + 1)
            continue
        written.add(key)
        fresh.append(pair)
    result.pairs = fresh
    summary.pairs += len(fresh)
    summary.per_worker[result.worker] = summary.per_worker.get(result.worker, 0) + 1


def _key(seed: SeedQuery) -> str:
    return structure.normalized(seed.sql) if _parses(seed.sql) else seed.sql


def _generated(conn: psycopg.Connection[Any], wanted: int, random_seed: int, shape: SeedShape) -> list[SeedQuery]:
    """Candidates for ``wanted`` seeds (four times as many: some return no rows)."""
    names = [(schema, name) for schema, name in conn.execute(_USER_TABLES).fetchall()]
    schema = read_schema(conn, load_catalog(conn, names))
    statements = generate(schema, wanted * 4, random.Random(f"seeds:{random_seed}"), shape)
    if not statements:
        raise CorpusError("no table has a foreign key, declared or inferred: cannot generate joined seeds")
    return [SeedQuery(f"gen{index:04d}", sql) for index, sql in enumerate(statements, 1)]


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
