"""`laser corpus`: build a SQL-MCTS corpus of (slow, fast) pairs on a database (model/corpus/)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from laser import demo
from laser.localdb import LocalCluster, bring_up
from model.corpus import stats
from model.corpus.build import CorpusConfig, CorpusError, build, load_seed_queries
from model.corpus.mcts import RewardConfig
from model.corpus.search import SearchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="the database to build on (default: the local cluster's demo database)")
    parser.add_argument("--out", type=Path, required=True, help="the corpus, JSONL (one pair a line)")
    parser.add_argument("--seed-queries", type=Path, required=True,
                        help="seeds: a directory of .sql files or a JSON list of queries")
    parser.add_argument("--seeds", type=int, help="use at most this many seeds (in file order)")
    parser.add_argument("--time-budget-s", type=float, help="start no new seed after this many seconds")
    parser.add_argument("--workers", type=int, default=2, help="verifier worker processes (default 2)")
    parser.add_argument("--timeout-ms", type=int, default=10_000, help="Tmax, the cap on every execution")
    parser.add_argument("--iterations", type=int, default=8, help="MCTS rounds per seed (default 8)")
    parser.add_argument("--width", type=int, default=3, help="children per expansion (default 3)")
    parser.add_argument("--max-depth", type=int, default=4, help="transformations along a path at most")
    parser.add_argument("--exploration", type=float, default=1.0, help="c in UCT (Eq. 1)")
    parser.add_argument("--min-slowdown", type=float, default=2.0, help="keep pairs at least this much slower")
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")


def main(args: argparse.Namespace) -> int:
    try:
        seeds = load_seed_queries(args.seed_queries)
        if args.seeds is not None:
            seeds = seeds[: args.seeds]
        config = CorpusConfig(
            timeout_ms=args.timeout_ms, min_slowdown=args.min_slowdown, workers=args.workers,
            random_seed=args.random_seed, time_budget_s=args.time_budget_s,
            search=SearchConfig(iterations=args.iterations, width=args.width, max_depth=args.max_depth,
                                rewards=RewardConfig(exploration=args.exploration)))
    except (CorpusError, ValueError) as exc:
        print(f"laser corpus: {exc}", file=sys.stderr)
        return 2
    dsn = args.dsn
    if dsn is None:
        cluster = LocalCluster.default()
        bring_up(cluster)
        demo.ensure_demo_database(cluster)
        dsn = cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE)
    try:
        summary = build(dsn, seeds, args.out, config, resume=args.resume)
    except CorpusError as exc:
        print(f"laser corpus: {exc}", file=sys.stderr)
        return 2
    pairs = [line for line in args.out.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in pairs]
    print(f"{summary.seeds_done} seed(s) grown, {len(summary.seeds_skipped)} skipped, {summary.variants} variants "
          f"executed, {summary.candidates} candidates, {summary.pairs} new pairs ({len(rows)} in {args.out}) "
          f"in {summary.elapsed_s:.0f} s")
    for name, reason in summary.seeds_skipped:
        print(f"  skipped {name}: {reason}")
    for reason, count in sorted(summary.dropped.items()):
        print(f"  dropped {count}: {reason}")
    print(stats.render({
        "seeds": stats.table1([s.sql for s in seeds], templates=len(seeds)),
        "corpus (slow queries)": stats.table1([r["slow_sql"] for r in rows],
                                              templates=len({r["seed_name"] for r in rows})),
    }))
    return 0
