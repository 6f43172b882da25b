"""`laser env serve`: the RL environment over HTTP, speaking the seed environment's contract (model/env/)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.env.episode import EnvConfig, EnvError, Environment
from model.env.scoring import ScoreConfig
from model.env.server import EnvServer
from model.env.tasks import DEMO_TASKS, TaskFileError, load_tasks
from sidecar.verify import VerifierConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    serve = sub.add_parser("serve", help="serve reset / step / state / tasks / grader / execute / leaderboard "
                                         "over HTTP")
    serve.add_argument("--dsn", required=True, help="the database the tasks run on (libpq conninfo); every "
                                                    "statement runs read-only as this role")
    serve.add_argument("--tasks", type=Path,
                       help="a JSONL file: one task a line (task_id, sql_query, optional task_name, "
                            "task_description, difficulty, max_steps), or a corpus from `laser corpus` "
                            "(default: the five seed tasks on the demo database)")
    serve.add_argument("--port", type=int, default=7860, help="TCP port (default 7860; 0: any free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--role", help="verify as this role (SET ROLE) instead of the DSN's login role")
    serve.add_argument("--timeout-ms", type=int, default=30_000,
                       help="cap on every execution of a query (default 30000)")
    serve.add_argument("--text-weight", type=float, default=0.0,
                       help="share of the score given to the action's analysis fields (default 0: the "
                            "verifier alone decides)")


def main(args: argparse.Namespace) -> int:
    try:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be between 0 and 65535; got {args.port}")
        config = EnvConfig(verifier=VerifierConfig(statement_timeout_ms=args.timeout_ms),
                           scoring=ScoreConfig(text_weight=args.text_weight), role=args.role)
        tasks = load_tasks(args.tasks) if args.tasks is not None else list(DEMO_TASKS)
    except (TaskFileError, ValueError) as exc:
        print(f"laser env serve: {exc}", file=sys.stderr)
        return 2
    environment = Environment(args.dsn, tasks, config)
    try:
        problems = environment.check_tasks()
    except EnvError as exc:
        print(f"laser env serve: {exc}", file=sys.stderr)
        return 1
    if problems:
        print(f"laser env serve: {len(problems)} task(s) do not run on this database:", file=sys.stderr)
        for problem in problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    try:
        server = EnvServer(environment, args.host, args.port)
    except OSError as exc:
        print(f"laser env serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"serving {len(tasks)} task(s) on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
