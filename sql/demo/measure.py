"""Measure the rules backend on the demo workload: speedup and result equality per query.

Usage: .venv/bin/python sql/demo/measure.py --dsn "host=... dbname=laser_demo"

Each statement runs in a READ ONLY transaction with a statement_timeout: one warm-up run, then
the median of three timed runs. Results are compared as multisets of rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sidecar.backends.base import Prompt  # noqa: E402
from sidecar.backends.rules import RulesBackend  # noqa: E402
from sidecar.catalog import load_catalog, referenced_tables  # noqa: E402

QUERY_DIR = Path(__file__).resolve().parent / "queries"


def run_timed(conn: psycopg.Connection, sql: str, timeout_ms: int, runs: int = 3) -> tuple[float, Counter[Any]]:
    """Warm-up once, then the median wall time (ms) of ``runs`` executions and the result multiset."""
    timings: list[float] = []
    rows: list[tuple[Any, ...]] = []
    for attempt in range(runs + 1):
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
            started = time.perf_counter()
            rows = conn.execute(sql).fetchall()
            elapsed = (time.perf_counter() - started) * 1000
        if attempt > 0:
            timings.append(elapsed)
    return statistics.median(timings), Counter(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the demo database")
    parser.add_argument("--timeout-ms", type=int, default=60_000)
    parser.add_argument("--show-sql", action="store_true", help="print the best candidate of each query")
    args = parser.parse_args(argv)

    backend = RulesBackend()
    failures = 0
    header = f"{'query':<38} {'original ms':>12} {'best ms':>10} {'speedup':>8}  equal  rules"
    print(header)
    print("-" * len(header))
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        for path in sorted(QUERY_DIR.glob("*.sql")):
            sql = path.read_text()
            catalog = load_catalog(conn, referenced_tables(sql))
            completions = backend.generate([Prompt(sql, catalog)], n=8)[0]
            original_ms, original_rows = run_timed(conn, sql, args.timeout_ms)
            best: tuple[float, bool, str, str] | None = None
            for completion in completions:
                try:
                    ms, rows = run_timed(conn, completion.text, args.timeout_ms)
                except psycopg.Error as error:
                    print(f"  {path.stem}: {completion.source} failed: {type(error).__name__}: {error}".rstrip())
                    continue
                equal = rows == original_rows
                candidate = (ms, equal, completion.source, completion.text)
                if best is None or (equal, -ms) > (best[1], -best[0]):
                    best = candidate
            if best is None:
                failures += 1
                print(f"{path.stem:<38} {original_ms:>12.1f} {'-':>10} {'-':>8}  -      (no candidate)")
                continue
            best_ms, equal, source, text = best
            speedup = original_ms / best_ms if best_ms > 0 else float("inf")
            if not equal or speedup < 2.0:
                failures += 1
            print(f"{path.stem:<38} {original_ms:>12.1f} {best_ms:>10.1f} {speedup:>7.1f}x  "
                  f"{'yes' if equal else 'NO ':<5}  {source.removeprefix('rules:')}")
            if args.show_sql:
                print(f"    {text}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
