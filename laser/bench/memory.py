"""`laser bench-memory`: the verifier's peak memory on huge results, measured.

Two scenarios, each in a fresh process so that its peak resident set is its own:

* refuse: one query returning `--rows` rows (10 million by default), past the session's row cap
  (one million): the verifier must refuse it without holding the result.
* compare: an original and an equivalent candidate returning `--compare-rows` rows each, in
  opposite orders: compared as multisets while they stream by.

Reported per scenario: the verdict, wall time, the growth of the peak resident set over the
process's size before the query (`ru_maxrss`: libpq's buffers included), and tracemalloc's peak
of Python allocations (which slows the run; the times are for comparison between scenarios only).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from laser.localdb import LocalCluster, bring_up
from sidecar.verify import ReadOnlySession, Verifier, VerifierConfig

SCENARIOS = ("refuse", "compare")


def series(rows: int, descending: bool = False) -> str:
    """A query returning `rows` rows of an integer and its md5 text.

    >>> series(3)
    'SELECT i, md5(i::text) AS h FROM generate_series(1, 3) AS i'
    """
    order = " ORDER BY i DESC" if descending else ""
    return f"SELECT i, md5(i::text) AS h FROM generate_series(1, {int(rows)}) AS i{order}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def measure(scenario: str, dsn: str, rows: int, trace: bool = True) -> dict[str, Any]:
    """Run one scenario in this process and return what it measured (`trace`: with tracemalloc)."""
    session = ReadOnlySession.connect(dsn, None, statement_timeout_ms=300_000)
    verifier = Verifier(session, VerifierConfig(statement_timeout_ms=300_000, perturbed_instances=False))
    baseline = _peak_rss_mb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        if scenario == "refuse":
            run = session.run(f"SELECT i FROM generate_series(1, {int(rows)}) AS i")
            verdict = (f"refused: more than {session.max_rows} rows" if run.too_many_rows
                       else f"not refused ({run.row_count} rows)")
        elif scenario == "compare":
            profile = verifier.prepare(series(rows))
            outcome = verifier.check_equivalence(profile, series(rows, descending=True))
            verdict = f"{outcome.status.value}: {outcome.detail}"
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        elapsed = time.perf_counter() - start
        _, python_peak = tracemalloc.get_traced_memory() if trace else (0, 0)
    finally:
        if trace:
            tracemalloc.stop()
        session.close()
    return {"scenario": scenario, "rows": rows, "verdict": verdict, "seconds": round(elapsed, 2),
            "peak_rss_growth_mb": round(_peak_rss_mb() - baseline, 1),
            "python_peak_mb": round(python_peak / 2**20, 1) if trace else None}


def measure_apart(scenario: str, dsn: str, rows: int, trace: bool = True) -> dict[str, Any]:
    """`measure` in a child process (its own peak resident set)."""
    flags = [] if trace else ["--no-tracemalloc"]
    done = subprocess.run([sys.executable, "-m", "laser.bench.memory", "--scenario", scenario, "--dsn", dsn,
                           "--rows", str(rows), *flags], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scenario {scenario} failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="libpq conninfo (default: the local cluster's postgres database)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the result to refuse")
    parser.add_argument("--compare-rows", type=int, default=1_000_000, help="rows of each result to compare")
    parser.add_argument("--no-tracemalloc", dest="trace", action="store_false",
                        help="do not trace Python allocations (faster; no Python peak reported)")
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    dsn = args.dsn
    if dsn is None:
        cluster = LocalCluster.default()
        bring_up(cluster)
        dsn = cluster.dsn()
    if args.scenario:  # the child process of measure_apart
        print(json.dumps(measure(args.scenario, dsn, args.rows, args.trace)))
        return 0
    print(f"{'scenario':<9} {'rows':>11} {'seconds':>8} {'peak RSS growth MB':>19} {'Python peak MB':>15}  verdict")
    for scenario, rows in (("refuse", args.rows), ("compare", args.compare_rows)):
        m = measure_apart(scenario, dsn, rows, args.trace)
        python_peak = "-" if m["python_peak_mb"] is None else m["python_peak_mb"]
        print(f"{scenario:<9} {rows:>11,} {m['seconds']:>8} {m['peak_rss_growth_mb']:>19} {python_peak:>15}"
              f"  {m['verdict'][:90]}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
