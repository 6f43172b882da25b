"""`laser corpus`: build a SQL-MCTS corpus of (slow, fast) pairs on a database (model/corpus/)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from laser import demo
from laser.localdb import LocalCluster, bring_up
from model.corpus import stats, workload
from model.corpus.build import CorpusConfig, CorpusError, SeedQuery, build, load_seed_queries
from model.corpus.mcts import RewardConfig
from model.corpus.search import SearchConfig
from model.corpus.seeds import SeedShape
from model.corpus.workload import WorkloadError
from sidecar.verify import ReadOnlySession, SessionError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="the database to build on (default: the local cluster's demo database)")
    parser.add_argument("--out", type=Path, required=True, help="the corpus, JSONL (one pair a line)")
    parser.add_argument("--seed-queries", type=Path,
                        help="seeds: a directory of .sql files or a JSON list of queries (default: generate "
                             "them from the schema)")
    parser.add_argument("--from-pg-stat-statements", action="store_true",
                        help="seeds (also) from the statements pg_stat_statements has seen in this database, "
                             "slowest in total first, their $n bound to typical values from the statistics")
    parser.add_argument("--min-mean-ms", type=float, default=0.0,
                        help="with --from-pg-stat-statements: only statements at least this slow on average")
    parser.add_argument("--seeds", type=int, help="use at most this many seeds (in file order), or generate "
                                                  "this many (default 20)")
    parser.add_argument("--min-joins", type=int, default=2, help="generated seeds: joins at least (default 2)")
    parser.add_argument("--min-predicates", type=int, default=3, help="generated seeds: predicates at least")
    parser.add_argument("--min-subqueries", type=int, default=1, help="generated seeds: subqueries at least")
    parser.add_argument("--time-budget-s", type=float, help="start no new seed after this many seconds")
    parser.add_argument("--workers", type=int, default=2,
                        help="local engine: verifier processes; ray: actors per database (default 2)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: one seed at a time, its variants verified in parallel (default); ray: seeds "
                             "in parallel on Ray actors, each verifying against the primary or a replica")
    parser.add_argument("--ray-address", help="a running Ray cluster (\"auto\" or host:port); default: start a "
                                              "local Ray instance for the run")
    parser.add_argument("--dsn-replica", action="append", default=[], metavar="DSN",
                        help="with --engine ray: a replica of the database (same schema and data), repeatable")
    parser.add_argument("--timeout-ms", type=int, default=10_000, help="Tmax, the cap on every execution")
    parser.add_argument("--cap-factor", type=float, default=20.0,
                        help="cut each seed's variants at this multiple of the seed's time (default 20)")
    parser.add_argument("--iterations", type=int, default=8, help="MCTS rounds per seed (default 8)")
    parser.add_argument("--width", type=int, default=3, help="children per expansion (default 3)")
    parser.add_argument("--max-depth", type=int, default=4, help="transformations along a path at most")
    parser.add_argument("--exploration", type=float, default=1.0, help="c in UCT (Eq. 1)")
    parser.add_argument("--min-slowdown", type=float, default=2.0, help="keep pairs at least this much slower")
    parser.add_argument("--backend", choices=["rules", "transformers", "vllm"], default="rules",
                        help="rules: the reverse optimizer's transformations only (default); transformers or "
                             "vllm: also free-form expansion by the model in --model-dir")
    parser.add_argument("--model-dir", default="", help="a local Hugging Face model directory (model backends)")
    parser.add_argument("--device", default="auto", help="transformers backend: cpu, cuda or auto")
    parser.add_argument("--model-temperature", type=float, default=0.8, help="sampling temperature of mutations")
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --out")
    parser.add_argument("--plot", type=Path, help="also write the slowdown and transformation distributions as a PNG")


def main(args: argparse.Namespace) -> int:
    try:
        seeds = load_seed_queries(args.seed_queries) if args.seed_queries is not None else []
        given = args.seed_queries is not None or args.from_pg_stat_statements
        generated = 0 if given else (args.seeds or 20)
        shape = SeedShape(min_joins=args.min_joins, min_predicates=args.min_predicates,
                          min_subqueries=args.min_subqueries)
        config = CorpusConfig(
            timeout_ms=args.timeout_ms, cap_factor=args.cap_factor, min_slowdown=args.min_slowdown,
            workers=args.workers, random_seed=args.random_seed, time_budget_s=args.time_budget_s,
            backend=args.backend, model_dir=args.model_dir, device=args.device,
            model_temperature=args.model_temperature,
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
    workload_skipped: list[tuple[str, str]] = []
    if args.from_pg_stat_statements:
        try:
            found, workload_skipped = _workload_seeds(dsn, args.seeds or 20, args.min_mean_ms)
        except (WorkloadError, SessionError) as exc:
            print(f"laser corpus: {exc}", file=sys.stderr)
            return 2
        print(f"pg_stat_statements: {len(found)} statement(s) as seeds, {len(workload_skipped)} left out",
              file=sys.stderr)
        seeds = seeds + found
    if args.seeds is not None:
        seeds = seeds[: args.seeds]
    try:
        summary = build(dsn, seeds, args.out, config, resume=args.resume, generate_seeds=generated, shape=shape,
                        engine=args.engine, replicas=args.dsn_replica, ray_address=args.ray_address)
    except CorpusError as exc:
        print(f"laser corpus: {exc}", file=sys.stderr)
        return 2
    pairs = [line for line in args.out.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in pairs]
    print(f"{summary.seeds_done} seed(s) grown, {len(summary.seeds_skipped)} skipped, {summary.variants} variants "
          f"executed, {summary.candidates} candidates, {summary.pairs} new pairs ({len(rows)} in {args.out}) "
          f"in {summary.elapsed_s:.0f} s")
    print("  time: " + ", ".join(f"{part} {seconds:.0f} s" for part, seconds in summary.seconds.items())
          + (" (summed over workers)" if args.engine == "ray" else ""))
    if args.engine == "ray":
        print("  seeds grown per database: " + ", ".join(f"{name} {n}" for name, n in summary.per_worker.items()))
    if summary.model:
        print("  model mutations: " + ", ".join(f"{key} {value}" for key, value in summary.model.items()))
    for name, reason in [*workload_skipped, *summary.seeds_skipped]:
        print(f"  skipped {name}: {reason}")
    for reason, count in sorted(summary.dropped.items()):
        print(f"  dropped {count}: {reason}")
    if args.plot is not None and rows:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    # Generated seeds are not known here: the distinct seeds of the pairs stand for them.
    seed_sql = [s.sql for s in seeds] or list(dict.fromkeys(json.loads(line)["seed_sql"] for line in pairs))
    print(stats.render({
        "seeds": stats.table1(seed_sql, templates=len(set(seed_sql))),
        "corpus (slow queries)": stats.table1([r["slow_sql"] for r in rows],
                                              templates=len({r["seed_name"] for r in rows})),
    }))
    return 0


def _workload_seeds(dsn: str, limit: int, min_mean_ms: float) -> tuple[list[SeedQuery], list[tuple[str, str]]]:
    with ReadOnlySession.connect(dsn, None) as session:
        found, skipped = workload.statements(session, limit, min_mean_ms)
    return [SeedQuery(s.name, s.sql) for s in found], skipped


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Two panels: the distribution of verified slowdowns (log scale; lower bounds marked) and how
    often each transformation appears on the paths of the kept pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    exact = [r["slowdown"] for r in rows if not r["slowdown_is_lower_bound"]]
    bounds = [r["slowdown"] for r in rows if r["slowdown_is_lower_bound"]]
    uses: dict[str, int] = {}
    for row in rows:
        for step in row["path"]:
            uses[step] = uses.get(step, 0) + 1
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    top = max(exact + bounds)
    bins = [2 ** (i / 2) for i in range(2, 2 + int(2 * math.log2(max(top, 2.0))) + 2)]
    left.hist([exact, bounds], bins=bins, stacked=True, label=["measured", "lower bound (slow query hit the cap)"])
    left.set_xscale("log")
    left.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_xlabel("slowdown of the slow query vs its seed (x)")
    left.set_ylabel("pairs")
    left.legend()
    names = sorted(uses, key=lambda name: uses[name])
    right.barh(names, [uses[name] for name in names])
    right.set_xlabel("uses on the paths of kept pairs")
    figure.suptitle(f"SQL-MCTS corpus: {len(rows)} pairs from {len({r['seed_name'] for r in rows})} seeds")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
