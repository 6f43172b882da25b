"""`laser bench`: pick the workload and its database, run the methods, write JSON, markdown and plots."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from laser.bench import datasets, report
from laser.bench.runner import (
    ORIGINAL,
    BenchError,
    Method,
    PipelineMethod,
    Protocol,
    ReplayMethod,
    Runner,
    summaries,
)
from laser.bench.workloads import BenchQuery, load_workload
from laser.localdb import LocalCluster, project_root


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", default="demo",
                   help="demo, tpch, tpcds, a directory of .sql files, or a JSON list of {id, query}")
    p.add_argument("--scale", type=float, default=1.0, help="scale factor for tpch / tpcds (default 1)")
    p.add_argument("--instances", type=int, default=1, help="instances per template (tpch / tpcds)")
    p.add_argument("--seed", type=int, default=1, help="seed for template parameters beyond instance 1")
    p.add_argument("--queries", help="only these query ids, comma-separated (e.g. q01,q17)")
    p.add_argument("--dsn", help="run against this database instead of the local cluster "
                                 "(its data must already be loaded; required for file workloads)")
    p.add_argument("--fk-indexes", action="store_true", help="also create the usual foreign-key indexes")
    p.add_argument("--reload", action="store_true", help="generate and load the data again")
    p.add_argument("--protocol", default="laser", choices=["laser", "e3"],
                   help="laser: 1 warm-up + 3 runs, mean; e3: 5 runs, mean without min and max")
    p.add_argument("--timeout", type=float, default=300.0, help="per-query cap in seconds (default 300)")
    p.add_argument("--equiv-timeout", type=float,
                   help="when the original hits the cap, run it once more up to this many seconds "
                        "to get its result for the equivalence check")
    p.add_argument("--backend", default="rules", choices=["rules", "transformers", "vllm"],
                   help="the sidecar backend to benchmark (default rules)")
    p.add_argument("--model-dir", default="", help="the model directory for the transformers and vllm backends")
    p.add_argument("--adapter", default="", help="a PEFT LoRA adapter of --model-dir (e.g. from laser train grpo "
                                                 "--lora-r) to measure with it")
    p.add_argument("--device", default="auto", help="transformers backend: auto, cpu, cuda, cuda:N")
    p.add_argument("--no-rules", action="store_true",
                   help="with a model backend: the model's candidates alone (default: the rules' too, one pool)")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="cap on the tokens a model generates per "
                                                                   "completion (default 1024)")
    p.add_argument("--label", default="", help="the method's name in the results (default laser-<backend>, "
                                               "laser-rules+<backend> with the rules)")
    p.add_argument("--no-rewrite", action="store_true", help="measure only the original and replay files")
    p.add_argument("--max-candidates", type=int, help="candidates the pipeline verifies per query")
    p.add_argument("--replay", action="append", default=[], metavar="[NAME=]FILE",
                   help="a JSON list of {id, rewritten_query} from another system (repeatable)")
    p.add_argument("--json", dest="json_out", help="where to write the JSON result "
                   "(default <state dir>/bench/<workload>.json); markdown and PNGs go beside it")
    p.add_argument("--fresh", action="store_true", help="ignore the progress of an earlier, interrupted run")


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _replays(specs: list[str]) -> list[Method]:
    methods: list[Method] = []
    for spec in specs:
        name, _, file = spec.rpartition("=")
        path = Path(file)
        methods.append(ReplayMethod(name or path.stem, path))
    return methods


def _workload(args: argparse.Namespace) -> tuple[str, list[BenchQuery]]:
    if args.workload in datasets.BUILTIN:
        label = args.workload if args.workload == "demo" else f"{args.workload}-sf{datasets.scale_text(args.scale)}"
        queries = datasets.queries(args.workload, args.instances, args.seed, args.scale)
    else:
        if not args.dsn:
            raise BenchError("a workload from files needs --dsn: the database its queries run on")
        path = Path(args.workload)
        label, queries = path.stem, load_workload(path)
    if args.queries:
        wanted = [q.strip() for q in args.queries.split(",") if q.strip()]
        known = {q.id for q in queries}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise BenchError(f"unknown query ids: {', '.join(unknown)}")
        queries = [q for q in queries if q.id in wanted]
    return label, queries


def _database(args: argparse.Namespace) -> str:
    if args.dsn:
        if "dbname" not in conninfo_to_dict(args.dsn):
            raise BenchError("--dsn must name the database (dbname=...)")
        return str(args.dsn)
    cluster = LocalCluster.default()
    _log("starting the local PostgreSQL cluster …")
    cluster.start()
    cluster.wait_ready()
    return datasets.ensure(cluster, args.workload, args.scale, fk_indexes=args.fk_indexes,
                           reload=args.reload, progress=_log)


def _meta(args: argparse.Namespace, label: str, dsn: str, protocol: Protocol, methods: list[str]) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        settings: dict[str, str] = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', 'join_collapse_limit', "
            "'effective_cache_size', 'jit')").fetchall())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(),
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        commit = ""
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "workload": label,
        "scale": args.scale if args.workload in ("tpch", "tpcds") else None,
        "fk_indexes": bool(args.fk_indexes),
        "instances": args.instances,
        "seed": args.seed,
        "protocol": {"name": protocol.name, "warmups": protocol.warmups, "runs": protocol.runs,
                     "trim": protocol.trim, "timeout_s": protocol.timeout_s, "description": protocol.describe()},
        "methods": methods,
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(memory_gib, 1), "platform": platform.platform(),
                    "python": platform.python_version()},
        "postgresql": {"version": version, "settings": settings},
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "command": "laser bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark the arguments describe; returns the result document (also written to disk)."""
    protocol = Protocol.named(args.protocol, args.timeout)
    label, queries = _workload(args)
    if not queries:
        raise BenchError("the workload has no queries")
    replays = _replays(args.replay)
    dsn = _database(args)
    methods: list[Method] = []
    if not args.no_rewrite:
        methods.append(PipelineMethod(dsn, args.backend, args.timeout, args.max_candidates, args.model_dir,
                                      args.device, args.adapter, with_rules=not args.no_rules,
                                      max_new_tokens=args.max_new_tokens, label=args.label))
    methods.extend(replays)
    out = Path(args.json_out) if args.json_out else LocalCluster.default().state_dir / "bench" / f"{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    state = out.with_name(out.name + ".progress.jsonl")

    runner = Runner(dsn, methods, protocol, equiv_timeout_s=args.equiv_timeout, progress=_log)
    _log(f"benchmark {label}: {len(queries)} queries; methods: {', '.join([ORIGINAL, *(m.name for m in methods)])}; "
         f"{protocol.describe()}")
    records = runner.run(queries, state, fresh=args.fresh)
    names = [m.name for m in methods]
    result = {"meta": _meta(args, label, dsn, protocol, [ORIGINAL, *names]),
              "summary": summaries(records, names, protocol.timeout_s), "queries": records}
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = out.with_suffix(".md")
    md.write_text(f"# {label}\n\n{report.markdown(result)}\n## Per query\n\n{report.per_query_markdown(result)}")
    pngs = report.plots(result, out.with_suffix(""))
    result["files"] = {"json": str(out), "markdown": str(md), "plots": [str(p) for p in pngs]}
    return result


def main(args: argparse.Namespace) -> int:
    result = run(args)
    print(report.markdown(result))
    files = result["files"]
    print(f"JSON: {files['json']}\nmarkdown: {files['markdown']}\nplots: {', '.join(files['plots'])}")
    return 0
