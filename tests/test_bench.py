"""`laser bench` against a real PostgreSQL: methods, replay files, padding, timeouts, resuming, outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.sql import Composable

from laser import demo
from laser.bench.runner import (
    BenchError,
    PipelineMethod,
    Proposal,
    Protocol,
    ReplayMethod,
    Runner,
    Timing,
    measure_interleaved,
    summaries,
)
from laser.bench.workloads import BenchQuery, WorkloadError, load_workload
from laser.localdb import LocalCluster
from sidecar.verify import ReadOnlySession
from sidecar.verify.session import Run

ROOT = Path(__file__).resolve().parent.parent
DB = "laser_bench_runner_test"

QUERIES = [
    BenchQuery("big_orders", "SELECT id, amount FROM orders WHERE amount > 900 ORDER BY id"),
    BenchQuery("per_customer", "SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n "
                               "FROM customers c"),
    BenchQuery("total", "SELECT sum(amount) AS total FROM orders"),
]


@pytest.fixture(scope="module")
def bench_dsn(cluster: LocalCluster) -> Iterator[str]:
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB}", "-c", f"CREATE DATABASE {DB}")
    dsn = cluster.dsn(DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, amount int NOT NULL)")
        conn.execute("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 200) g")
        conn.execute("INSERT INTO orders SELECT g, 1 + g % 200, g % 1000 FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE")
    yield dsn
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB}")


def _replay(tmp_path: Path, name: str, entries: list[dict[str, object]]) -> ReplayMethod:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(entries))
    return ReplayMethod(name, path)


QUICK = Protocol("quick", warmups=1, runs=2, trim=False, timeout_s=1.0)


def test_replay_outputs_are_checked_padded_and_summarized(bench_dsn: str, tmp_path: Path) -> None:
    slow = "SELECT sum(amount) AS total FROM orders WHERE (SELECT count(*) FROM generate_series(1, 200000000)) > 0"
    other = _replay(tmp_path, "other", [
        {"id": "big_orders", "rewritten_query": "SELECT id, amount FROM orders WHERE amount >= 900 ORDER BY id"},
        {"id": "per_customer", "rewritten_query":
            "SELECT c.id, count(o.id) AS n FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id"},
        {"id": "total", "rewritten_query": slow},
    ])
    broken = _replay(tmp_path, "broken", [
        {"id": "big_orders", "rewritten_query": "SELEC id FROM orders"},
        {"id": "per_customer", "rewritten_query": "DELETE FROM orders"},
    ])
    runner = Runner(bench_dsn, [other, broken], QUICK, progress=None)
    records = {r["id"]: r for r in runner.run(QUERIES)}

    wrong = records["big_orders"]["methods"]["other"]
    assert wrong["valid"] and wrong["equivalent"] is False and "row counts differ" in wrong["equivalence_note"]
    assert wrong["counted_s"] == records["big_orders"]["original"]["latency_s"]  # padded
    assert wrong["speedup"] == 1.0

    right = records["per_customer"]["methods"]["other"]
    assert right["valid"] and right["equivalent"] is True and right["changed"]
    assert right["counted_s"] == right["latency_s"]

    timed_out = records["total"]["methods"]["other"]
    assert timed_out["timed_out"] and timed_out["latency_s"] == QUICK.timeout_s
    assert timed_out["counted_s"] == QUICK.timeout_s  # a slowdown, not padded away

    syntax = records["big_orders"]["methods"]["broken"]
    assert not syntax["valid"] and "syntax" in syntax["error"]
    refused = records["per_customer"]["methods"]["broken"]
    assert not refused["valid"] and "refused by the guard" in refused["equivalence_note"]
    missing = records["total"]["methods"]["broken"]
    assert not missing["changed"] and "no rewrite for this id" in missing["note"]
    with psycopg.connect(bench_dsn) as conn:  # the DELETE never ran
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (20000,)

    s = summaries(list(records.values()), ["other", "broken"], QUICK.timeout_s)
    assert s["other"]["succ"] == 1.0 and s["other"]["equiv"] == round(1 / 3, 4)  # the timed-out result is unknown
    assert s["broken"]["succ"] == round(1 / 3, 4) and s["broken"]["rewritten"] == 2
    assert s["other"]["timeouts"] == 1
    original_total = records["total"]["original"]["latency_s"]
    assert s["other"]["sld_2x"] == (1 if QUICK.timeout_s >= 2 * original_total else 0)


def test_equal_outputs_share_one_measurement(bench_dsn: str, tmp_path: Path) -> None:
    text = "SELECT sum(amount)::bigint AS total FROM orders"
    a = _replay(tmp_path, "a", [{"id": "total", "rewritten_query": text}])
    b = _replay(tmp_path, "b", [{"id": "total", "rewritten_query": text + ";"}])
    record = Runner(bench_dsn, [a, b], QUICK, progress=None).run(QUERIES[2:])[0]
    assert record["methods"]["a"]["samples_s"] == record["methods"]["b"]["samples_s"]
    assert record["methods"]["a"]["equivalent"] is True  # values compared, not column types


class Recording(ReadOnlySession):
    """A real read-only session that also notes the order in which it ran statements."""

    executed: list[str]

    def run(self, statement: str | Composable, timeout_ms: int | None = None, fetch: bool = True) -> Run:
        self.executed.append(str(statement))
        return super().run(statement, timeout_ms=timeout_ms, fetch=fetch)


def test_the_original_and_its_rewrites_are_warmed_up_then_timed_in_turn(bench_dsn: str) -> None:
    """Every text warms up, then the timed runs alternate (A, B, A, B, ...): a drift in the machine's
    speed hits each alike. A text that hits the cap drops out after that run."""
    with psycopg.connect(bench_dsn) as conn:
        session = Recording(conn, None)
        session.executed = []
        original, rewrite = Timing("SELECT sum(amount) FROM orders", QUICK), Timing("SELECT 42", QUICK)
        slow = Timing("SELECT pg_sleep(1.5)", QUICK)
        original.step(session)  # the bench runs the original once before any method proposes
        measure_interleaved(session, [original, rewrite, slow])
    a, b, c = original.sql, rewrite.sql, slow.sql
    assert session.executed == [a, b, c, a, b, a, b]
    for timing in (original, rewrite):
        assert len(timing.result.samples_s) == QUICK.runs and timing.result.latency_s is not None
    assert slow.result.timed_out and slow.result.latency_s == QUICK.timeout_s


class Counting:
    """A method that proposes nothing and counts how often it was asked."""

    name = "counting"

    def __init__(self, stop_after: int | None = None) -> None:
        self.asked: list[str] = []
        self.stop_after = stop_after

    def propose(self, query: BenchQuery) -> Proposal:
        if self.stop_after is not None and len(self.asked) >= self.stop_after:
            raise KeyboardInterrupt  # the user pressed ^C mid-run
        self.asked.append(query.id)
        return Proposal(None)

    def fingerprint(self) -> str:
        return "counting"


def test_an_interrupted_run_resumes_where_it_stopped(bench_dsn: str, tmp_path: Path) -> None:
    state = tmp_path / "run.progress.jsonl"
    first = Counting(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        Runner(bench_dsn, [first], QUICK, progress=None).run(QUERIES, state)
    assert first.asked == ["big_orders", "per_customer"]
    assert len(state.read_text().splitlines()) == 1 + 2  # header + two finished queries

    lines: list[str] = []
    second = Counting()
    records = Runner(bench_dsn, [second], QUICK, progress=lines.append).run(QUERIES, state)
    assert second.asked == ["total"]
    assert [r["id"] for r in records] == [q.id for q in QUERIES]
    assert any("resuming: 2 of 3" in line for line in lines)

    with pytest.raises(BenchError, match="--fresh"):
        Runner(bench_dsn, [second], Protocol.named("e3", 1.0), progress=None).run(QUERIES, state)
    third = Counting()
    Runner(bench_dsn, [third], Protocol.named("e3", 1.0), progress=None).run(QUERIES, state, fresh=True)
    assert third.asked == [q.id for q in QUERIES]


def test_the_pipeline_method_proposes_verified_rewrites(cluster: LocalCluster) -> None:
    query = next(q for q in demo.demo_queries() if q.name.startswith("01_"))
    method = PipelineMethod(cluster.dsn(demo.DEMO_DB), "rules", timeout_s=60)
    proposal = method.propose(BenchQuery(query.name, query.sql))
    assert proposal.sql and proposal.sql != query.sql
    assert proposal.verification_s > 0 and "verified equivalent" in proposal.note
    with pytest.raises(BenchError):
        PipelineMethod(cluster.dsn(demo.DEMO_DB), "gpt", timeout_s=60)


def test_bad_replay_and_workload_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "q1"}')
    with pytest.raises(BenchError, match="JSON list"):
        ReplayMethod("bad", bad)
    bad.write_text("[{\"rewritten_query\": \"SELECT 1\"}]")
    with pytest.raises(BenchError, match="needs a string 'id'"):
        ReplayMethod("bad", bad)
    with pytest.raises(WorkloadError):
        load_workload(tmp_path / "nowhere")
    (tmp_path / "w.json").write_text('[{"id": "a", "query": "SELECT 1"}, {"id": "a", "query": "SELECT 2"}]')
    with pytest.raises(WorkloadError, match="repeat"):
        load_workload(tmp_path / "w.json")
    with pytest.raises(BenchError, match="distinct"):
        Runner("dbname=x", [Counting(), Counting()], QUICK)


def test_laser_bench_cli_writes_json_markdown_and_plots(bench_dsn: str, tmp_path: Path) -> None:
    workload = tmp_path / "queries"
    workload.mkdir()
    for q in QUERIES:
        (workload / f"{q.id}.sql").write_text(f"-- {q.id}\n{q.sql};\n")
    replay = tmp_path / "theirs.json"
    replay.write_text(json.dumps([{"id": "total", "rewritten_query": "SELECT sum(amount) AS total FROM orders o"}]))
    out = tmp_path / "out" / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "laser.cli", "bench", "--workload", str(workload), "--dsn", bench_dsn,
         "--timeout", "20", "--replay", f"theirs={replay}", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["meta"]["methods"] == ["original", "laser-rules", "theirs"]
    for method in ("original", "laser-rules", "theirs"):
        for key in ("mean", "median", "p75", "p90", "p95", "equiv", "succ", "improved", "spd_2x", "sld_2x"):
            assert key in result["summary"][method], (method, key)
    assert result["summary"]["theirs"]["rewritten"] == 1
    assert "| laser-rules |" in done.stdout and "| theirs |" in done.stdout
    assert out.with_suffix(".md").read_text().startswith("# queries")
    for png in ("result-latency-cdf.png", "result-speedup.png"):
        assert (out.parent / png).read_bytes()[:4] == b"\x89PNG"
    assert "3/3" in done.stderr  # progress lines

    again = subprocess.run(
        [sys.executable, "-m", "laser.cli", "bench", "--workload", str(workload), "--dsn", bench_dsn,
         "--timeout", "20", "--replay", f"theirs={replay}", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0 and "resuming: 3 of 3" in again.stderr


def test_laser_bench_cli_refuses_bad_input(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "laser.cli", "bench", "--workload", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode != 0 and "needs --dsn" in done.stderr


def test_laser_bench_tpch_generates_loads_and_measures(cluster: LocalCluster, tmp_path: Path) -> None:
    """The acceptance path at a tiny scale: data generated and loaded by the command itself."""
    env = {**os.environ, "LASER_STATE_DIR": str(cluster.state_dir), "LASER_PG_PORT": str(cluster.port),
           "MPLBACKEND": "Agg"}
    out = tmp_path / "tpch.json"
    command = [sys.executable, "-m", "laser.cli", "bench", "--workload", "tpch", "--scale", "0.01",
               "--queries", "q01,q06,q17,q20", "--timeout", "30", "--json", str(out)]
    try:
        done = subprocess.run([*command, "--reload"], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
        assert done.returncode == 0, done.stderr
        assert "generating tpch data at scale factor 0.01" in done.stderr
        result = json.loads(out.read_text())
        assert [r["id"] for r in result["queries"]] == ["q01", "q06", "q17", "q20"]
        assert result["meta"]["scale"] == 0.01 and result["meta"]["workload"] == "tpch-sf0_01"
        rules = result["summary"]["laser-rules"]
        assert rules["equiv"] == 1.0  # nothing unverified is suggested
        q20 = next(r for r in result["queries"] if r["id"] == "q20")["methods"]["laser-rules"]
        assert q20["changed"] and q20["equivalent"] and q20["speedup"] >= 2  # the correlated aggregate, decorrelated
        assert all(r["original"]["rows"] is not None for r in result["queries"])
        with psycopg.connect(cluster.dsn("laser_bench_tpch_sf0_01")) as conn:
            assert conn.execute("SELECT count(*) FROM nation").fetchone() == (25,)
            indexes = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'").fetchone()
            assert indexes == (8,)  # primary keys only: the papers' setting

        again = subprocess.run([*command, "--no-rewrite", "--fresh"], capture_output=True, text=True,
                               timeout=900, cwd=ROOT, env=env)
        assert again.returncode == 0, again.stderr
        assert "using laser_bench_tpch_sf0_01" in again.stderr  # loaded once, reused
        assert json.loads(out.read_text())["meta"]["methods"] == ["original"]
    finally:
        cluster.psql("-c", "DROP DATABASE IF EXISTS laser_bench_tpch_sf0_01")


def test_a_model_backend_without_its_model_is_a_clear_error(tmp_path: Path) -> None:
    from laser.bench.runner import BenchError, PipelineMethod

    with pytest.raises(BenchError, match="needs a model directory"):
        PipelineMethod("host=/tmp dbname=x user=y", "transformers")
    with pytest.raises(BenchError, match=f"model directory {tmp_path / 'none'} does not exist"):
        PipelineMethod("host=/tmp dbname=x user=y", "transformers", model_dir=str(tmp_path / "none"))


def test_a_model_method_alone_or_with_the_rules_is_named_and_fingerprinted_apart(
        cluster: LocalCluster, tmp_path: Path) -> None:
    """`--no-rules` measures the model's candidates alone: an untrained model finds nothing where the
    rules (in the same pool by default) find the verified rewrite."""
    from laser.bench.runner import PipelineMethod
    from model.tiny import build_tiny_model

    model_dir = str(build_tiny_model(tmp_path / "tiny", ["SELECT a FROM t"], seed=0))
    query = next(q for q in demo.demo_queries() if q.name.startswith("01_"))
    alone = PipelineMethod(cluster.dsn(demo.DEMO_DB), "transformers", timeout_s=60, model_dir=model_dir,
                           device="cpu", with_rules=False, max_new_tokens=8)
    pooled = PipelineMethod(cluster.dsn(demo.DEMO_DB), "transformers", timeout_s=60, model_dir=model_dir,
                            device="cpu", max_new_tokens=8)
    named = PipelineMethod(cluster.dsn(demo.DEMO_DB), "transformers", timeout_s=60, model_dir=model_dir,
                           device="cpu", with_rules=False, max_new_tokens=16, label="tiny")
    assert (alone.name, pooled.name, named.name) == ("laser-transformers", "laser-rules+transformers", "tiny")
    assert len({alone.fingerprint(), pooled.fingerprint(), named.fingerprint()}) == 3
    assert alone.propose(BenchQuery(query.name, query.sql)).sql is None
    assert pooled.propose(BenchQuery(query.name, query.sql)).sql is not None
