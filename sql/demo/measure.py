"""Measure the rules backend on the demo workload directly (no extension, no gRPC), with the verifier.

Usage: .venv/bin/python sql/demo/measure.py --dsn "host=... dbname=laser_demo user=shop"

Every candidate goes through sidecar.verify (the same checks and timing protocol as
laser_rewrite); the table shows the best verified candidate per query, with the wall time of its
verification and the part of it spent on perturbed instances. Exits 1 when a query has
no candidate verified at least 2x faster.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sidecar.backends.base import Prompt  # noqa: E402
from sidecar.backends.rules import RulesBackend  # noqa: E402
from sidecar.catalog import load_catalog, referenced_tables  # noqa: E402
from sidecar.demo import demo_queries  # noqa: E402
from sidecar.verify import ReadOnlySession, Verifier, VerifierConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the demo database")
    parser.add_argument("--timeout-ms", type=int, default=60_000)
    parser.add_argument("--show-sql", action="store_true", help="print the best candidate of each query")
    args = parser.parse_args(argv)

    backend = RulesBackend()
    failures = 0
    header = (f"{'query':<38} {'original ms':>12} {'best ms':>10} {'speedup':>8}  {'outcome':<14} "
              f"{'verify ms':>10} {'perturbed ms':>13}  rules")
    print(header)
    print("-" * len(header))
    with ReadOnlySession.connect(args.dsn, None, statement_timeout_ms=args.timeout_ms) as session:
        verifier = Verifier(session, VerifierConfig(statement_timeout_ms=args.timeout_ms))
        for query in demo_queries():
            original = verifier.prepare(query.sql)
            catalog = load_catalog(session.connection, referenced_tables(query.sql))
            completions = backend.generate([Prompt(query.sql, catalog)], n=8)[0]
            verdicts = []
            for completion in completions:
                start = time.perf_counter()
                outcome = verifier.verify(original, completion.text)
                verdicts.append((outcome, completion, (time.perf_counter() - start) * 1000.0))
            if not verdicts:
                failures += 1
                print(f"{query.name:<38} {original.warmup.elapsed_ms:>12.1f} {'-':>10} {'-':>8}  no candidate")
                continue
            outcome, best, verify_ms = max(verdicts, key=lambda v: (v[0].equivalent, v[0].speedup))
            failures += not (outcome.equivalent and outcome.speedup >= 2.0)
            perturbed = outcome.evidence.get("perturbed_instances", {}).get("elapsed_ms", 0.0)
            print(f"{query.name:<38} {outcome.original_ms:>12.1f} {outcome.candidate_ms:>10.1f} "
                  f"{outcome.speedup:>7.1f}x  {outcome.status.value:<14} {verify_ms:>10.1f} {perturbed:>13.1f}  "
                  f"{best.source.removeprefix('rules:')}")
            if args.show_sql:
                print(f"    {best.text}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
