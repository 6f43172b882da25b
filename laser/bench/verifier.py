"""`laser bench-verifier`: what verification costs beyond running the two queries, and how the
parallel pool scales — measured on the SQL-pair fixtures (sql/verifier/) in the local cluster.

Overhead per pair = wall time of prepare + verify − the time the same executions of Q and R take
on their own (warm-up and timed runs for pairs that get timed; one run each otherwise).

`--demo` adds the same view on bigger tables: the demo database's slow queries, each with the rules
backend's best candidate, verification time and the share of it spent on perturbed instances.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from laser import demo
from laser.bench.pairs import Pair, load_pairs
from laser.localdb import LocalCluster, bring_up, project_root
from model.pool import Job, VerifierPool, outcome_counts
from sidecar.backends.rules import RulesBackend
from sidecar.catalog import load_catalog
from sidecar.verify import ReadOnlySession, Verifier, VerifierConfig, guard

FIXTURE_DB = "laser_fixtures"
PAIRS_DIR = project_root() / "sql" / "verifier"
TIMED = frozenset({"faster", "slower", "no_change"})


def ensure_fixture_database(cluster: LocalCluster, reload: bool = False) -> str:
    """Create and load the fixture database (once); return a DSN for the plain role `shop`."""
    demo.ensure_demo_role(cluster)
    cluster.ensure_database(FIXTURE_DB)
    loaded = cluster.psql("-tAc", "SELECT to_regclass('public.visits') IS NOT NULL", dbname=FIXTURE_DB).stdout.strip()
    if loaded != "t" or reload:
        cluster.psql("-f", "-", dbname=FIXTURE_DB, stdin=(PAIRS_DIR / "schema.sql").read_text())
    return cluster.dsn(FIXTURE_DB, demo.DEMO_ROLE)


def all_pairs() -> list[Pair]:
    return load_pairs(PAIRS_DIR / "equivalent.sql") + load_pairs(PAIRS_DIR / "not_equivalent.sql")


def measure_overhead(dsn: str, pairs: list[Pair], config: VerifierConfig, progress: bool = True) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with ReadOnlySession.connect(dsn, None, statement_timeout_ms=config.statement_timeout_ms) as session:
        for i, pair in enumerate(pairs, start=1):
            verifier = Verifier(session, config)
            start = time.perf_counter()
            outcome = verifier.verify(verifier.prepare(pair.original), pair.candidate)
            wall = (time.perf_counter() - start) * 1000.0
            runs = 1 + config.timed_runs if outcome.status.value in TIMED else 1
            bare = 0.0
            for _ in range(runs):
                for sql_text in (pair.original, pair.candidate):
                    run = session.run(sql_text)
                    bare += run.elapsed_ms
            instances = outcome.evidence.perturbed_instances
            perturbed = instances.elapsed_ms if instances else 0.0
            rows.append({"pair": pair.name, "status": outcome.status.value, "verify_ms": wall,
                         "execution_ms": bare, "overhead_ms": wall - bare, "perturbed_ms": perturbed})
            if progress and (i % 10 == 0 or i == len(pairs)):
                print(f"  overhead: {i}/{len(pairs)} pairs", flush=True)
    overhead = [r["overhead_ms"] for r in rows]
    return {
        "pairs": len(rows),
        "statuses": dict(Counter(r["status"] for r in rows)),
        "verify_ms_median": statistics.median(r["verify_ms"] for r in rows),
        "execution_ms_median": statistics.median(r["execution_ms"] for r in rows),
        "overhead_ms_median": statistics.median(overhead),
        "overhead_ms_p90": _quantile(overhead, 0.9),
        "overhead_ms_max": max(overhead),
        "perturbed_ms_median": statistics.median(r["perturbed_ms"] for r in rows),
        "rows": rows,
    }


def measure_pool(dsn: str, pairs: list[Pair], config: VerifierConfig, workers: list[int], repeat: int,
                 progress: bool = True) -> list[dict[str, Any]]:
    jobs = [Job(p.original, p.candidate) for p in pairs] * repeat
    results = []
    for n in workers:
        with VerifierPool(dsn, workers=n, config=config) as pool:
            pool.verify_many([Job("SELECT 1 AS x", "SELECT 2 - 1 AS x")] * n * 2)  # start every worker
            start = time.perf_counter()
            outcomes = pool.verify_many(jobs)
            wall = time.perf_counter() - start
        results.append({"workers": n, "jobs": len(jobs), "seconds": wall, "jobs_per_s": len(jobs) / wall,
                        "statuses": outcome_counts(outcomes)})
        if progress:
            print(f"  pool: {n} worker(s): {len(jobs)} jobs in {wall:.1f} s ({len(jobs) / wall:.1f} jobs/s)",
                  flush=True)
    return results


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_demo(dsn: str, config: VerifierConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Per demo query: the original, the rules backend's best verified candidate, and what verifying
    it cost (the whole verification, and the perturbed instances within it)."""
    backend = RulesBackend()
    rows: list[dict[str, Any]] = []
    with ReadOnlySession.connect(dsn, None, statement_timeout_ms=config.statement_timeout_ms) as session:
        verifier = Verifier(session, config)
        for query in demo.demo_queries():
            statement = guard(query.sql)
            original = verifier.prepare(statement)
            catalog = load_catalog(session.connection, statement.tables)
            verdicts = []
            for candidate in backend.search(query.sql, catalog).candidates[:8]:
                started = time.perf_counter()
                outcome = verifier.verify(original, candidate.sql)
                verdicts.append((outcome, candidate, (time.perf_counter() - started) * 1000.0))
            row: dict[str, Any] = {"query": query.name, "original_ms": original.warmup.elapsed_ms}
            if verdicts:
                outcome, best, verify_ms = max(verdicts, key=lambda v: (v[0].equivalent, v[0].speedup))
                instances = outcome.evidence.perturbed_instances
                row.update(rewrite_ms=outcome.candidate_ms, original_ms=outcome.original_ms,
                           speedup=outcome.speedup, status=outcome.status.value, verify_ms=verify_ms,
                           perturbed_ms=instances.elapsed_ms if instances else 0.0, rules=list(best.rules))
            rows.append(row)
            if progress:
                print(f"  demo: {query.name}: {row.get('status', 'no candidate')}", flush=True)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", default="1,2,4", help="pool sizes to measure, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="times each pair is queued for the pool")
    parser.add_argument("--demo", action="store_true",
                        help="also measure verification on the demo database's slow queries (loads it if needed)")
    parser.add_argument("--out", help="JSON report path (default: <state dir>/bench/verifier.json)")


def main(args: argparse.Namespace) -> int:
    cluster = LocalCluster.default()
    print("starting the local PostgreSQL cluster ...", flush=True)
    bring_up(cluster)
    workers = [int(w) for w in args.workers.split(",")]
    out = Path(args.out) if args.out else cluster.state_dir / "bench" / "verifier.json"
    report = run(cluster, workers, args.repeat, out, with_demo=args.demo)
    print()
    print(format_report(report))
    print(f"\nfull report: {out}")
    return 0


def run(cluster: LocalCluster, workers: list[int], repeat: int, out: Path | None,
        progress: bool = True, with_demo: bool = False) -> dict[str, Any]:
    dsn = ensure_fixture_database(cluster)
    pairs = all_pairs()
    config = VerifierConfig()
    if progress:
        print(f"verifier benchmark: {len(pairs)} pairs from {PAIRS_DIR.relative_to(project_root())}", flush=True)
    report = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count() or 1} CPUs, {platform.system()} {platform.release()}",
        "database": f"{FIXTURE_DB} (sql/verifier/schema.sql), PostgreSQL local cluster",
        "config": {"timed_runs": config.timed_runs, "perturbed_instances": config.perturbed_instances,
                   "max_instances": config.instances.max_instances, "sample_rows": config.instances.sample_rows},
        "overhead": measure_overhead(dsn, pairs, config, progress),
        "pool": measure_pool(dsn, pairs, config, workers, repeat, progress),
    }
    if with_demo:
        demo.ensure_demo_database(cluster)
        report["demo"] = measure_demo(cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE),
                                      VerifierConfig(statement_timeout_ms=60_000), progress)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report


def format_report(report: dict[str, Any]) -> str:
    o = report["overhead"]
    lines = [
        f"{report['date']} · {report['machine']} · {report['database']}",
        f"overhead beyond executing Q and R, {o['pairs']} pairs ({_counts(o['statuses'])}):",
        f"  verify (prepare + verify) median {o['verify_ms_median']:.1f} ms; "
        f"the same executions alone median {o['execution_ms_median']:.1f} ms",
        f"  overhead median {o['overhead_ms_median']:.1f} ms, p90 {o['overhead_ms_p90']:.1f} ms, "
        f"max {o['overhead_ms_max']:.1f} ms; of which perturbed instances median {o['perturbed_ms_median']:.1f} ms",
        "parallel pool throughput:",
        "  workers  jobs  seconds  jobs/s  speed-up",
    ]
    base = report["pool"][0]["jobs_per_s"] if report["pool"] else 1.0
    for p in report["pool"]:
        lines.append(f"  {p['workers']:>7}  {p['jobs']:>4}  {p['seconds']:>7.1f}  {p['jobs_per_s']:>6.1f}  "
                     f"{p['jobs_per_s'] / base:>7.2f}x")
    if "demo" in report:
        lines += ["demo database, best rules candidate per query:",
                  f"  {'query':<36} {'original ms':>11} {'rewrite ms':>10} {'speedup':>8}  {'outcome':<14} "
                  f"{'verify ms':>9} {'perturbed ms':>12}"]
        for row in report["demo"]:
            if "status" not in row:
                lines.append(f"  {row['query']:<36} {row['original_ms']:>11.1f}  no candidate")
                continue
            lines.append(f"  {row['query']:<36} {row['original_ms']:>11.1f} {row['rewrite_ms']:>10.1f} "
                         f"{row['speedup']:>7.1f}x  {row['status']:<14} {row['verify_ms']:>9.1f} "
                         f"{row['perturbed_ms']:>12.1f}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
