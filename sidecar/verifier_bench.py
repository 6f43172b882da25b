"""`laser bench-verifier`: what verification costs beyond running the two queries, and how the
parallel pool scales — measured on the SQL-pair fixtures (sql/verifier/) in the local cluster.

Overhead per pair = wall time of prepare + verify − the time the same executions of Q and R take
on their own (warm-up and timed runs for pairs that get timed; one run each otherwise).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from sidecar import demo
from sidecar.localdb import LocalCluster, project_root
from sidecar.verify import ReadOnlySession, Verifier, VerifierConfig
from sidecar.verify.pairs import Pair, load_pairs
from sidecar.verify.pool import Job, VerifierPool, outcome_counts

FIXTURE_DB = "laser_fixtures"
PAIRS_DIR = project_root() / "sql" / "verifier"
TIMED = frozenset({"faster", "slower", "no_change"})


def ensure_fixture_database(cluster: LocalCluster, reload: bool = False) -> str:
    """Create and load the fixture database (once); return a DSN for the plain role `shop`."""
    demo.ensure_demo_role(cluster)
    exists = cluster.psql("-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{FIXTURE_DB}'").stdout.strip()
    if not exists:
        cluster.psql("-c", f"CREATE DATABASE {FIXTURE_DB}")
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
            perturbed = outcome.evidence.get("perturbed_instances", {}).get("elapsed_ms", 0.0)
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


def run(cluster: LocalCluster, workers: list[int], repeat: int, out: Path | None,
        progress: bool = True) -> dict[str, Any]:
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
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
