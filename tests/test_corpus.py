"""SQL-MCTS on real PostgreSQL: the search finds a verified slowdown from a known seed, the corpus
file is resumable without duplicates, and bad input is a clear error or a skipped seed."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import psycopg
import pytest

from laser import demo
from laser.localdb import LocalCluster
from model.corpus import stats, workload
from model.corpus.build import CorpusConfig, CorpusError, SeedQuery, build, load_seed_queries
from model.corpus.evaluate import PoolEvaluator
from model.corpus.search import SearchConfig, grow, slow_nodes
from model.corpus.seeds import SeedShape, generate, read_schema
from model.pool import VerifierPool
from sidecar.catalog import load_catalog
from sidecar.verify import OutcomeStatus, ReadOnlySession, Verifier, VerifierConfig

# IN over refunded orders: a hashed semi-join; as a correlated COUNT (in_to_count) it runs per product.
KNOWN_SEED = ("SELECT p.category, count(*) FROM products AS p WHERE p.id IN (SELECT o.product_id FROM orders AS o "
              "WHERE o.quantity > 3 AND o.status = 'refunded') GROUP BY p.category")
SMALL = CorpusConfig(workers=1, search=SearchConfig(iterations=3, width=3, max_depth=2))


def test_mcts_finds_a_2x_slowdown_from_a_known_seed(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, ["products", "orders"])
    with VerifierPool(demo_dsn, workers=1) as pool:
        root, stats = grow(KNOWN_SEED, catalog, PoolEvaluator(pool, KNOWN_SEED, 10_000), random.Random(0),
                           SearchConfig(iterations=4))
    assert stats.variants >= 2 and root.visits >= 2
    slow = slow_nodes(root, 2.0)
    assert slow, [(n.path, n.evaluation) for n in root.walk()]
    assert all(n.evaluation is not None and n.evaluation.valid for n in slow)
    # What the search kept is slower and equivalent by the full verifier too (slow query as the original).
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=30_000) as session:
        verifier = Verifier(session)
        best = max(slow, key=lambda n: n.evaluation.slowdown if n.evaluation else 0)
        outcome = verifier.verify(verifier.prepare(best.sql), KNOWN_SEED)
    assert outcome.status == OutcomeStatus.FASTER and outcome.speedup >= 2.0, outcome.detail


def test_corpus_pairs_reverify_and_a_resumed_run_adds_no_duplicates(demo_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "corpus.jsonl"
    seeds = [SeedQuery("refunded", KNOWN_SEED)]
    first = build(demo_dsn, seeds, out, SMALL, log=io.StringIO())
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert first.pairs == len(pairs) >= 1
    manifest = json.loads((tmp_path / "corpus.jsonl.schema.json").read_text())
    assert {"public.orders", "public.products"} <= set(manifest["tables"])
    for pair in pairs:
        assert pair["schema_id"] == manifest["schema_id"] and pair["seed_name"] == "refunded"
        assert pair["slowdown"] >= 2.0 and pair["path"] and pair["split"] in ("train", "validation")
        assert pair["evidence"]["perturbed_instances"] >= 1
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=30_000) as session:
        verifier = Verifier(session, VerifierConfig(timed_runs=1))
        for pair in pairs:
            again = verifier.check_equivalence(verifier.prepare(pair["slow_sql"]), pair["seed_sql"])
            assert again.status == OutcomeStatus.EQUIVALENT, again.detail

    with pytest.raises(CorpusError, match="--resume"):
        build(demo_dsn, seeds, out, SMALL, log=io.StringIO())
    again_summary = build(demo_dsn, [*seeds, SeedQuery("refunded again", KNOWN_SEED + " ")], out, SMALL,
                          resume=True, log=io.StringIO())
    assert again_summary.seeds_done == 0 and again_summary.pairs == 0
    assert out.read_text().splitlines() == [json.dumps(p) for p in pairs]


def test_bad_seeds_are_skipped_with_their_reason_and_nothing_is_written(
        demo_dsn: str, admin_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM orders").fetchone()
    seeds = [SeedQuery("delete", "DELETE FROM orders"), SeedQuery("syntax", "SELECT FROM WHERE ((("),
             SeedQuery("empty", "SELECT id FROM users WHERE id < 0"),
             SeedQuery("writes", "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone")]
    summary = build(demo_dsn, seeds, tmp_path / "c.jsonl", SMALL, log=io.StringIO())
    reasons = dict(summary.seeds_skipped)
    assert set(reasons) == {"delete", "syntax", "empty", "writes"}
    assert reasons["delete"].startswith("refused") and "DELETE" in reasons["delete"]
    assert reasons["syntax"].startswith("refused: syntax error")
    assert reasons["empty"] == "returns no rows"
    assert reasons["writes"].startswith("refused")
    assert (tmp_path / "c.jsonl").read_text() == ""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == before


def test_an_unreachable_database_and_an_empty_schema_are_clear_errors(cluster, tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="cannot connect"):
        build("host=127.0.0.1 port=1 dbname=x connect_timeout=2", [SeedQuery("q", "SELECT 1")],
              tmp_path / "a.jsonl", SMALL, log=io.StringIO())
    exists = cluster.psql("-tAc", "SELECT 1 FROM pg_database WHERE datname = 'laser_empty'").stdout.strip()
    if not exists:
        cluster.psql("-c", "CREATE DATABASE laser_empty")
    with pytest.raises(CorpusError, match="no tables"):
        build(cluster.dsn("laser_empty"), [SeedQuery("q", "SELECT 1")], tmp_path / "b.jsonl", SMALL,
              log=io.StringIO())


def test_seed_files(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.sql").write_text("SELECT 2")
    (tmp_path / "dir" / "a.sql").write_text("SELECT 1")
    assert load_seed_queries(tmp_path / "dir") == [SeedQuery("a", "SELECT 1"), SeedQuery("b", "SELECT 2")]
    listed = tmp_path / "seeds.json"
    listed.write_text(json.dumps(["SELECT 1", {"name": "two", "sql": "SELECT 2"}]))
    assert load_seed_queries(listed) == [SeedQuery("q0001", "SELECT 1"), SeedQuery("two", "SELECT 2")]
    listed.write_text(json.dumps([{"query": "SELECT 1"}]))
    with pytest.raises(CorpusError, match="item 0"):
        load_seed_queries(listed)
    with pytest.raises(CorpusError, match="no such file"):
        load_seed_queries(tmp_path / "missing.json")


def test_seeds_generated_from_the_schema_have_the_asked_shape_and_grow(demo_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        catalog = load_catalog(conn, ["users", "products", "orders", "events"])
        schema = read_schema(conn, catalog)
    inferred = {(e.child, e.column, e.parent) for e in schema.edges}
    assert ("public.orders", "user_id", "public.users") in inferred  # declared in the demo schema
    assert ("public.orders", "product_id", "public.products") in inferred
    shape = SeedShape(min_joins=2, min_predicates=3, min_subqueries=1)
    statements = generate(schema, 12, random.Random(7), shape)
    assert statements == generate(schema, 12, random.Random(7), shape)  # reproducible
    for sql in statements:
        counted = stats.shape(sql)
        assert counted.predicates >= 3 + 2 and counted.subqueries >= 1, sql  # + the join conditions
    summary = build(demo_dsn, [], tmp_path / "g.jsonl", SMALL, log=io.StringIO(), generate_seeds=2, shape=shape)
    assert summary.seeds_done == 2
    done = [json.loads(line) for line in (tmp_path / "g.jsonl.seeds.jsonl").read_text().splitlines()]
    assert all(entry["name"].startswith("gen") for entry in done)


def test_seeds_from_pg_stat_statements_get_constants_and_leave_out_the_verifiers_own(
        cluster, demo_dsn: str) -> None:
    probe = ("SELECT p.category AS pgss_seed_probe, count(*) FROM products AS p JOIN orders AS o "
             "ON o.product_id = p.id WHERE o.status = 'refunded' AND o.quantity > 2 GROUP BY p.category")
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute(probe).fetchall()
    with ReadOnlySession.connect(demo_dsn, None, statement_timeout_ms=30_000) as session:
        Verifier(session).prepare(probe.replace("pgss_seed_probe", "pgss_verifier_probe"))
        found, skipped = workload.statements(session, limit=1_000)
    texts = [s.sql for s in found]
    assert not any("pgss_verifier_probe" in t for t in texts), "the verifier's own statements are left out"
    mine = [s for s in found if "pgss_seed_probe" in s.sql]
    assert len(mine) == 1 and mine[0].calls >= 1 and mine[0].name.startswith("pgss"), (texts, skipped)
    assert "$" not in mine[0].sql and "'" in mine[0].sql  # each $n bound to a literal from the statistics
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute(mine[0].sql).fetchall()  # the bound statement runs (it may return no rows: admit() decides)
        common = conn.execute("SELECT most_common_vals::text::text[] FROM pg_stats WHERE tablename = 'orders' "
                              "AND attname = 'status'").fetchone()
    assert any(f"o.status = '{value}'" in mine[0].sql for value in common[0]), mine[0].sql
    with ReadOnlySession.connect(cluster.dsn("postgres"), None) as session, \
            pytest.raises(workload.WorkloadError, match="CREATE EXTENSION pg_stat_statements"):
        workload.statements(session, limit=10)


RAY_SCHEMA = """
CREATE TABLE products (id int PRIMARY KEY, category text NOT NULL);
CREATE TABLE orders (id int PRIMARY KEY, product_id int NOT NULL REFERENCES products, quantity int NOT NULL);
INSERT INTO products SELECT i, 'c' || (i % 7) FROM generate_series(1, 400) AS i;
INSERT INTO orders SELECT i, 1 + (i * 7919) % 400, i % 9 FROM generate_series(1, 40000) AS i;
ANALYZE;
"""
# EXISTS over orders: a hashed semi-join; as a correlated COUNT (exists_to_count) it scans orders per product.
RAY_SEEDS = [SeedQuery(f"ray{n}", f"SELECT p.category, count(*) FROM products AS p WHERE EXISTS (SELECT 1 FROM "
                                  f"orders AS o WHERE o.product_id = p.id AND o.quantity > {n}) GROUP BY p.category")
             for n in (2, 4, 6)]


def _database(cluster: LocalCluster, name: str, script: str) -> str:
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {name}")
    cluster.psql("-c", f"CREATE DATABASE {name}")
    cluster.psql("-c", script, dbname=name)
    cluster.psql("-c", f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {demo.DEMO_ROLE}", dbname=name)
    return cluster.dsn(name, demo.DEMO_ROLE)


def test_ray_engine_grows_seeds_on_the_primary_and_a_replica_in_seed_order(cluster, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    primary = _database(cluster, "laser_ray_a", RAY_SCHEMA)
    replica = _database(cluster, "laser_ray_b", RAY_SCHEMA)
    out = tmp_path / "ray.jsonl"
    config = CorpusConfig(workers=1, search=SearchConfig(iterations=2, width=2, max_depth=1))
    summary = build(primary, RAY_SEEDS, out, config, log=io.StringIO(), engine="ray", replicas=[replica])
    assert summary.seeds_done == 3 and not summary.seeds_skipped
    # Two actors, three seeds: both databases grew at least one.
    assert sorted(name.rsplit("/", 1)[1] for name in summary.per_worker) == ["laser_ray_a", "laser_ray_b"]
    done = [json.loads(line)["name"] for line in (tmp_path / "ray.jsonl.seeds.jsonl").read_text().splitlines()]
    assert done == ["ray2", "ray4", "ray6"]  # written in seed order, whichever actor finished first
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert pairs and all(p["slowdown"] >= 2.0 and p["path"] for p in pairs), summary
    assert [p["seed_name"] for p in pairs] == sorted(p["seed_name"] for p in pairs)
    with ReadOnlySession.connect(replica, None, statement_timeout_ms=30_000) as session:
        verifier = Verifier(session, VerifierConfig(timed_runs=1))
        again = verifier.check_equivalence(verifier.prepare(pairs[0]["slow_sql"]), pairs[0]["seed_sql"])
    assert again.status == OutcomeStatus.EQUIVALENT, again.detail

    other = _database(cluster, "laser_ray_c",
                      RAY_SCHEMA.replace("category text NOT NULL", "category text NOT NULL, note text"))
    with pytest.raises(CorpusError, match="another schema"):
        build(primary, RAY_SEEDS, tmp_path / "bad.jsonl", config, log=io.StringIO(), engine="ray", replicas=[other])
    with pytest.raises(CorpusError, match="--engine ray"):
        build(primary, RAY_SEEDS, tmp_path / "bad2.jsonl", config, log=io.StringIO(), replicas=[other])
