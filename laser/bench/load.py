"""`laser bench-load`: many callers at once, each in its own database session calling
laser_rewrite_evidence through a real sidecar: latency percentiles, throughput, errors by kind and
queue waits, with and without a capture (laser.capture) running beside them; and how much verifying
two requests at once moves the measured timings (against each demo query verified alone).

The mix per caller, in turn: a point look-up with a fresh constant (a cache miss, quick to verify),
a demo slow query made unique by a comment (a full verification), and a fixed look-up (a cache hit
after its first answer). A caller refused with SQLSTATE 53000 (queue full) backs off a second, as a
client retrying that transient error would.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from laser import demo
from laser.bench.metrics import percentile
from laser.localdb import LocalCluster, bring_up, project_root

SLOW_QUERIES = ("01_nonsargable_date_filter", "03_distinct_join_wide_rows", "05_repeated_window_aggregates",
                "06_repeated_category_totals")
"""The demo queries the callers send (02 and 04 take several times longer to verify; left out so a
phase sees many requests)."""
FIXED = "SELECT id, email FROM users WHERE id = 1"
BACKOFF_S = 1.0
CAPTURE_PAUSE_S = 2.0
"""Between capture runs (a scheduled job runs it every few minutes; here as often as the phase allows)."""


@dataclass(frozen=True)
class Call:
    kind: str
    """"lookup", "slow:<name>" or "cached"."""
    seconds: float
    sqlstate: str | None
    evidence: dict[str, Any] | None


def _free_address() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@contextlib.contextmanager
def sidecar(cluster: LocalCluster, slots: int, max_queued: int, log: Path) -> Iterator[str]:
    """A sidecar process for the cluster with these limits; yields its address."""
    address = _free_address()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "sidecar.server", "--listen", address, "--dsn", cluster.sidecar_dsn(),
             "--max-concurrent", str(slots), "--max-queued", str(max_queued)],
            stdout=output, stderr=subprocess.STDOUT, cwd=str(project_root()))
        try:
            _wait_answering(cluster, address, process)
            yield address
        finally:
            process.terminate()
            process.wait(timeout=60)


def _wait_answering(cluster: LocalCluster, address: str, process: subprocess.Popen[bytes],
                    timeout_s: float = 120) -> None:
    """Until laser_model_info() answers through the extension (the way the callers will reach it)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE), autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (address,))
        while True:
            try:
                conn.execute("SELECT laser_model_info()")
                return
            except psycopg.Error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the sidecar at {address} did not start (exit code {process.poll()})") from None
                time.sleep(0.2)


def _one_call(conn: psycopg.Connection[Any], kind: str, query: str) -> Call:
    started = time.monotonic()
    try:
        row = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()
    except psycopg.Error as exc:
        return Call(kind, time.monotonic() - started, exc.sqlstate or "?", None)
    return Call(kind, time.monotonic() - started, None, dict(row[0]) if row and row[0] else None)


def _caller(dsn: str, address: str, index: int, stop_at: float, timeout_s: float, slow: dict[str, str],
            calls: list[Call], lock: threading.Lock) -> None:
    names = sorted(slow)
    turn = index  # callers start at different points of the mix
    rng = random.Random(index)
    with psycopg.connect(dsn, autocommit=True, application_name=f"laser-bench-caller-{index}") as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false),"
                     " set_config('statement_timeout', %s, false)", (address, str(int(timeout_s * 1000))))
        while time.monotonic() < stop_at:
            step = turn % 3
            if step == 0:
                call = _one_call(conn, "lookup", f"SELECT id, email FROM users WHERE id = {rng.randrange(1, 10_000)}")
            elif step == 1:
                name = names[(turn // 3) % len(names)]
                call = _one_call(conn, f"slow:{name}", f"/* caller {index} call {turn} */ {slow[name]}")
            else:
                call = _one_call(conn, "cached", FIXED)
            turn += 1
            with lock:
                calls.append(call)
            if call.sqlstate == "53000":
                time.sleep(BACKOFF_S)


def _capture(admin_dsn: str, address: str, stop_at: float, out: dict[str, Any]) -> None:
    """laser.capture in a loop beside the callers, as the scheduled job would run it."""
    runs, notices, started = 0, [], time.monotonic()
    with psycopg.connect(admin_dsn, autocommit=True, application_name="laser-bench-capture") as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (address,))
        while time.monotonic() < stop_at:
            budget_s = max(1, int(stop_at - time.monotonic()))  # the capture ends with the phase
            try:
                conn.execute("CALL laser.capture(min_mean_ms => 1, min_calls => 1, top_n => 4, budget_s => %s,"
                             " databases => ARRAY['laser_demo'], retry_after => '0 seconds')", (budget_s,))
            except psycopg.Error as exc:
                notices.append(f"error {exc.sqlstate}: {exc}")
            runs += 1
            time.sleep(CAPTURE_PAUSE_S)
    out.update(runs=runs, seconds=round(time.monotonic() - started, 1), notices=notices[-4:])


def _seed_statements(dsn: str, slow: dict[str, str]) -> None:
    """Run the slow queries once directly, so pg_stat_statements has something for the capture."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in slow.values():
            conn.execute(sql).fetchall()


def run_phase(cluster: LocalCluster, address: str, callers: int, duration_s: float, timeout_s: float,
              slow: dict[str, str], capture: bool) -> dict[str, Any]:
    dsn = cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE)
    calls: list[Call] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration_s
    threads = [threading.Thread(target=_caller, args=(dsn, address, i, stop_at, timeout_s, slow, calls, lock))
               for i in range(callers)]
    captured: dict[str, Any] = {}
    if capture:
        threads.append(threading.Thread(target=_capture, args=(cluster.dsn(demo.DEMO_DB), address, stop_at,
                                                               captured)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return summarize(calls, callers, wall) | ({"capture": captured} if capture else {})


def summarize(calls: list[Call], callers: int, wall_s: float) -> dict[str, Any]:
    """Latency percentiles (answered calls), throughput, errors by SQLSTATE and queue waits.

    >>> summarize([Call("lookup", 0.5, None, {"queue_wait_ms": 100.0, "cached": False}),
    ...            Call("lookup", 0.1, "53000", None)], 2, 10.0)["errors"]
    {'53000 queue full (retryable)': 1}
    """
    answered = [c for c in calls if c.sqlstate is None]
    latencies = [c.seconds for c in answered]
    waits = [float(c.evidence.get("queue_wait_ms", 0.0)) for c in answered if c.evidence and not c.evidence["cached"]]
    refused = [c.seconds for c in calls if c.sqlstate == "53000"]
    return {
        "callers": callers,
        "wall_s": round(wall_s, 1),
        "calls": len(calls),
        "answered": len(answered),
        "throughput_per_s": round(len(answered) / wall_s, 3) if wall_s else 0.0,
        "verified_per_s": round(sum(1 for c in answered if c.evidence and not c.evidence["cached"]) / wall_s, 3),
        "cache_hits": sum(1 for c in answered if c.evidence and c.evidence["cached"]),
        "latency_s": _percentiles(latencies),
        "latency_by_kind_s": {kind: _percentiles([c.seconds for c in answered if c.kind.split(":")[0] == kind])
                              for kind in ("lookup", "slow", "cached")},
        "queue_wait_ms": _percentiles(waits),
        "refusal_s": _percentiles(refused),
        "errors": dict(Counter(_error_kind(c.sqlstate) for c in calls if c.sqlstate is not None)),
    }


def _error_kind(sqlstate: str | None) -> str:
    return {"53000": "53000 queue full (retryable)", "57014": "57014 statement_timeout (caller gave up)",
            "08006": "08006 sidecar unreachable"}.get(sqlstate or "", f"{sqlstate} other")


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p90": round(percentile(values, 90), 3),
            "p99": round(percentile(values, 99), 3), "max": round(max(values), 3)}


def _verify_into(results: dict[str, Call], dsn: str, address: str, name: str, sql: str, salt: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('laser.sidecar_address', %s, false)", (address,))
        results[name] = _one_call(conn, name, f"/* distortion {salt} */ {sql}")


def timing_distortion(cluster: LocalCluster, address: str, slow: dict[str, str], at_once: int,
                      rounds: int) -> dict[str, dict[str, float]]:
    """Each slow query verified `rounds` times while `at_once - 1` others verify beside it: the
    original's measured median (ms) and the speedup, per query (medians over the rounds)."""
    dsn = cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE)
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in slow}
    names = sorted(slow)
    for round_no in range(rounds):
        for offset in range(len(names)):
            group = [names[(offset + k) % len(names)] for k in range(at_once)]
            results: dict[str, Call] = {}
            threads = [threading.Thread(target=_verify_into, args=(results, dsn, address, name, slow[name],
                                                                   f"{at_once}-{round_no}-{offset}-{k}"))
                       for k, name in enumerate(group)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            first = results[group[0]]
            if first.evidence and first.evidence.get("original_ms"):
                seen[group[0]].append((float(first.evidence["original_ms"]), float(first.evidence["speedup"])))
    return {name: {"original_ms": round(statistics.median(o for o, _ in pairs), 2),
                   "speedup": round(statistics.median(s for _, s in pairs), 3), "n": len(pairs)}
            for name, pairs in seen.items() if pairs}


def compare(alone: dict[str, dict[str, float]], together: dict[str, dict[str, float]]) -> dict[str, Any]:
    """How far timings taken beside another verification are from those taken alone.

    >>> compare({"q": {"original_ms": 100.0, "speedup": 4.0}}, {"q": {"original_ms": 150.0, "speedup": 3.0}})
    {'original_ms_change': {'q': 0.5}, 'speedup_change': {'q': -0.25}, 'median_abs_speedup_change': 0.25}
    """
    names = sorted(set(alone) & set(together))
    original = {n: round(together[n]["original_ms"] / alone[n]["original_ms"] - 1, 3) for n in names}
    speedup = {n: round(together[n]["speedup"] / alone[n]["speedup"] - 1, 3) for n in names}
    return {"original_ms_change": original, "speedup_change": speedup,
            "median_abs_speedup_change": round(statistics.median(abs(v) for v in speedup.values()), 3) if names
            else None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--callers", default="16,64", help="concurrent callers per phase, comma-separated")
    parser.add_argument("--slots", default="1,2", help="sidecar max_concurrent values to measure, comma-separated")
    parser.add_argument("--max-queued", type=int, default=32, help="the sidecar's max_queued")
    parser.add_argument("--duration-s", type=float, default=60.0, help="seconds each phase sends requests")
    parser.add_argument("--timeout-s", type=float, default=60.0,
                        help="each caller's statement_timeout: how long it waits for an answer")
    parser.add_argument("--distortion-rounds", type=int, default=3,
                        help="rounds of the alone-vs-beside-another timing comparison (0: skip it)")
    parser.add_argument("--no-capture", action="store_true", help="skip the phases with a capture running")
    parser.add_argument("--out", help="JSON report path (default: <state dir>/bench/load.json)")


def main(args: argparse.Namespace) -> int:
    cluster = LocalCluster.default()
    print("starting the local PostgreSQL cluster ...", flush=True)
    bring_up(cluster)
    demo.ensure_demo_database(cluster)
    callers = [int(c) for c in args.callers.split(",")]
    slots = [int(s) for s in args.slots.split(",")]
    with psycopg.connect(cluster.dsn(demo.DEMO_DB), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
    needed = max(callers) + max(slots) * 3 + 10
    if row is None or row[0] < needed:
        print(f"laser bench-load: {max(callers)} callers need max_connections >= {needed} (it is "
              f"{row[0] if row else '?'}): ALTER SYSTEM SET max_connections = {needed} and restart the cluster",
              file=sys.stderr)
        return 2
    slow = {q.name: q.sql for q in demo.demo_queries() if q.name in SLOW_QUERIES}
    _seed_statements(cluster.dsn(demo.DEMO_DB, demo.DEMO_ROLE), slow)
    out = Path(args.out) if args.out else cluster.state_dir / "bench" / "load.json"
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count() or 1} CPUs, {platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "command": "laser bench-load " + " ".join(sys.argv[2:]),
        "settings": {"max_queued": args.max_queued, "duration_s": args.duration_s, "timeout_s": args.timeout_s,
                     "slow_queries": sorted(slow)},
        "phases": [], "distortion": {},
    }
    log = cluster.state_dir / "bench" / "load-sidecar.log"
    for slot_count in slots:
        with sidecar(cluster, slot_count, args.max_queued, log) as address:
            if args.distortion_rounds:
                print(f"timings with {slot_count} verification(s) at once ...", flush=True)
                report["distortion"][str(slot_count)] = timing_distortion(cluster, address, slow, slot_count,
                                                                          args.distortion_rounds)
            for count in callers:
                for capture in (False,) if args.no_capture else (False, True):
                    print(f"{count} callers, max_concurrent {slot_count}{', capture running' if capture else ''}"
                          f" ({args.duration_s:.0f} s) ...", flush=True)
                    phase = run_phase(cluster, address, count, args.duration_s, args.timeout_s, slow, capture)
                    report["phases"].append({"slots": slot_count, "capture": capture, **phase})
    if "1" in report["distortion"]:
        report["distortion_vs_alone"] = {k: compare(report["distortion"]["1"], v)
                                         for k, v in report["distortion"].items() if k != "1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(format_report(report))
    print(f"\nfull report: {out}")
    return 0


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{report['date']}  {report['machine']}  load average at start {report['load_average_at_start']}",
             "",
             "| slots | callers | capture | calls | answered/s | verified/s | p50 s | p90 s | p99 s | max s "
             "| queue wait p50/p90 ms | refusal p99 s | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in report["phases"]:
        lat, wait, refusal = p["latency_s"] or {}, p["queue_wait_ms"] or {}, p["refusal_s"] or {}
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(p["errors"].items())) or "none"
        capture = f"yes ({p['capture'].get('runs', 0)} run(s))" if p.get("capture") else "no"
        lines.append(f"| {p['slots']} | {p['callers']} | {capture} | {p['calls']} | {p['throughput_per_s']} "
                     f"| {p['verified_per_s']} | {lat.get('p50', '-')} | {lat.get('p90', '-')} | {lat.get('p99', '-')} "
                     f"| {lat.get('max', '-')} | {wait.get('p50', '-')}/{wait.get('p90', '-')} "
                     f"| {refusal.get('p99', '-')} | {errors} |")
    for slots, per_query in report.get("distortion", {}).items():
        lines.append("")
        lines.append(f"timings with {slots} verification(s) at once (median original ms, speedup): " + ", ".join(
            f"{name} {v['original_ms']} ms {v['speedup']}x" for name, v in sorted(per_query.items())))
    for slots, change in report.get("distortion_vs_alone", {}).items():
        lines.append(f"{slots} at once vs alone: original_ms change {change['original_ms_change']}, speedup change "
                     f"{change['speedup_change']}, median |speedup change| {change['median_abs_speedup_change']}")
    return "\n".join(lines)
