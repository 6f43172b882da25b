"""Retrieved demonstrations: structural similarity, the offline embedder, the pool, and the database's view.

The embedder test loads the bundled all-MiniLM-L6-v2 once for the module. The database tests use
a throwaway database of their own (`laser_retrieval_test`) on the session's test cluster.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest

from laser.localdb import LocalCluster
from sidecar.prompting.retrieval import (
    Demonstration,
    DemoPool,
    Embedder,
    load_demonstrations,
    structural_similarity,
    tree_edit_distance,
)

CORRELATED = ("SELECT e.name FROM employees e WHERE e.salary > "
              "(SELECT avg(e2.salary) FROM employees e2 WHERE e2.dept_id = e.dept_id)")
CORRELATED_DEMO = Demonstration(
    original_sql="SELECT p.title FROM products p WHERE p.price > "
                 "(SELECT avg(q.price) FROM products q WHERE q.category = p.category)",
    rewritten_sql="SELECT p.title FROM products p JOIN (SELECT category, avg(price) AS avg_price FROM products "
                  "GROUP BY category) a ON a.category = p.category WHERE p.price > a.avg_price",
    speedup=8.0, source="test")
UNRELATED_DEMOS = (
    Demonstration("SELECT station, avg(temperature) FROM weather GROUP BY station ORDER BY 2 DESC LIMIT 5",
                  "SELECT station, avg(temperature) FROM weather GROUP BY station ORDER BY 2 DESC LIMIT 5",
                  2.0, "test"),
    Demonstration("SELECT count(*) FROM orders WHERE created_at::date = '2024-03-05'",
                  "SELECT count(*) FROM orders WHERE created_at >= '2024-03-05' AND created_at < '2024-03-06'",
                  20.0, "test"),
    Demonstration("SELECT id FROM a UNION SELECT id FROM b",
                  "SELECT id FROM a UNION ALL SELECT id FROM b WHERE id NOT IN (SELECT id FROM a)",
                  1.6, "test"),
)
HAS_SENTENCE_TRANSFORMERS = importlib.util.find_spec("sentence_transformers") is not None


# -- structural similarity ---------------------------------------------------------------------------

def test_identical_texts_are_fully_similar() -> None:
    assert structural_similarity(CORRELATED, CORRELATED) == 1.0
    assert structural_similarity(CORRELATED, "  " + CORRELATED.replace(" ", "\n  ") + "\n") == 1.0


def test_literals_and_identifiers_do_not_count() -> None:
    renamed = ("SELECT x.title FROM products x WHERE x.price > "
               "(SELECT avg(y.cost) FROM items y WHERE y.category = x.kind)")
    assert structural_similarity(CORRELATED, renamed) == 1.0
    assert structural_similarity("SELECT a FROM t WHERE b = 1 AND c = 'x'",
                                 "SELECT zz FROM other WHERE q = 4711 AND r = $1") == 1.0


def test_operators_joins_and_subqueries_count() -> None:
    base = "SELECT a FROM t WHERE b = 1"
    assert structural_similarity(base, "SELECT a FROM t WHERE b > 1") < 1.0
    joined = structural_similarity(base, "SELECT a FROM t JOIN u ON u.id = t.id WHERE b = 1")
    nested = structural_similarity(base, "SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE d = 2)")
    assert 0.0 < joined < 1.0
    assert 0.0 < nested < 1.0
    assert structural_similarity(base, "SELECT a FROM t LEFT JOIN u ON u.id = t.id WHERE b = 1") < 1.0


def test_symmetric() -> None:
    texts = [CORRELATED, CORRELATED_DEMO.original_sql, *(d.original_sql for d in UNRELATED_DEMOS)]
    for a in texts:
        for b in texts:
            assert structural_similarity(a, b) == structural_similarity(b, a)
            assert 0.0 <= structural_similarity(a, b) <= 1.0


def test_unparseable_text() -> None:
    broken = "SELECT FROM WHERE ((("
    assert structural_similarity(broken, CORRELATED) == 0.0
    assert structural_similarity(CORRELATED, broken) == 0.0
    assert structural_similarity(broken, broken) == 1.0
    assert structural_similarity("", CORRELATED) == 0.0


def test_large_trees_are_capped() -> None:
    wide = "SELECT " + ", ".join(f"c{i} + d{i}" for i in range(400)) + " FROM t"
    assert structural_similarity(wide, wide.replace("+", "-")) < 1.0  # the first level still differs
    assert structural_similarity(wide, wide.replace(" FROM t", " FROM u")) == 1.0


def test_zhang_shasha_on_the_papers_example() -> None:
    assert tree_edit_distance(("f", ("d", "a", ("c", "b")), "e"), ("f", ("c", ("d", "a", "b")), "e")) == 2
    assert tree_edit_distance(("a", "b", "c"), ("a", "c")) == 1
    assert tree_edit_distance("a", "b") == 1


# -- the embedder ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedder() -> Embedder:
    if not HAS_SENTENCE_TRANSFORMERS:
        pytest.skip("sentence_transformers is not installed")
    model = Embedder()
    assert model.available, model.unavailable_reason
    assert model.load(), model.unavailable_reason
    return model


def test_embedder_loads_from_local_files_and_leaves_the_environment_alone() -> None:
    if not HAS_SENTENCE_TRANSFORMERS:
        pytest.skip("sentence_transformers is not installed")
    offline = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    before = {name: os.environ.get(name) for name in offline}
    fresh = Embedder()
    assert fresh.load(), fresh.unavailable_reason  # local_files_only: nothing could be downloaded
    assert {name: os.environ.get(name) for name in offline} == before  # no process-wide switches


def test_embedder_ranks_similar_sql_higher(embedder: Embedder) -> None:
    vectors = embedder.encode([
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE total > 100)",
        ("SELECT c.name FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id "
         "AND o.total > 100)"),
        "SELECT station, avg(temperature) FROM weather GROUP BY station",
    ])
    assert vectors.shape == (3, 384)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated
    again = embedder.encode(["SELECT station,   avg(temperature) FROM weather GROUP BY station"])
    assert (again[0] == vectors[2]).all()  # cached by whitespace-normalised text


def test_missing_model_means_structure_only() -> None:
    missing = Embedder(model_path="/nonexistent/model")
    assert not missing.available
    assert "does not exist" in (missing.unavailable_reason or "")
    pool = DemoPool(missing)
    pool.add(CORRELATED_DEMO)
    (best,) = pool.top_k(CORRELATED, k=1)
    assert best.cosine is None and best.score == best.structural == 1.0


# -- the pool --------------------------------------------------------------------------------------

def test_pool_ignores_slow_demos_and_deduplicates() -> None:
    pool = DemoPool(min_speedup=1.5)
    assert not pool.add(Demonstration("SELECT 1 FROM t", "SELECT 1 FROM t LIMIT 1", 1.2))
    assert not pool.add(Demonstration("SELECT 1 FROM t", "SELECT 1 FROM t LIMIT 1", float("nan")))
    assert pool.add(Demonstration("SELECT a FROM t WHERE b = 1", "rewrite one", 2.0))
    assert not pool.add(Demonstration("SELECT a  FROM t\nWHERE b = 1", "rewrite two", 1.8))
    assert pool.add(Demonstration("  SELECT a FROM t WHERE b = 1 ", "rewrite three", 3.0))
    assert len(pool) == 1
    assert pool.demonstrations()[0].rewritten_sql == "rewrite three"


def test_pool_evicts_the_slowest_when_full() -> None:
    pool = DemoPool(max_size=2)
    assert pool.add(Demonstration("SELECT 1", "x", 2.0))
    assert pool.add(Demonstration("SELECT 2", "x", 3.0))
    assert not pool.add(Demonstration("SELECT 3", "x", 1.9))
    assert pool.add(Demonstration("SELECT 4", "x", 4.0))
    assert sorted(d.original_sql for d in pool.demonstrations()) == ["SELECT 2", "SELECT 4"]


def _pool(embedder: Embedder | None, alpha: float) -> DemoPool:
    pool = DemoPool(embedder, alpha=alpha)
    for demo in (*UNRELATED_DEMOS, CORRELATED_DEMO):
        assert pool.add(demo)
    return pool


def test_top_k_prefers_the_same_shape(embedder: Embedder) -> None:
    ranked = _pool(embedder, 0.5).top_k(CORRELATED, k=3)
    assert ranked[0].demonstration == CORRELATED_DEMO
    assert len(ranked) == 3
    assert ranked[0].structural == 1.0 and ranked[0].cosine is not None
    assert ranked[0].score == pytest.approx(0.5 + 0.5 * max(ranked[0].cosine, 0.0))
    assert all(a.score >= b.score for a, b in itertools.pairwise(ranked))


def test_alpha_one_is_structure_only(embedder: Embedder) -> None:
    ranked = _pool(embedder, 1.0).top_k(CORRELATED, k=4)
    assert ranked[0].demonstration == CORRELATED_DEMO
    assert all(r.cosine is None and r.score == r.structural for r in ranked)
    exhaustive = sorted((structural_similarity(CORRELATED, d.original_sql) for d in (*UNRELATED_DEMOS,
                                                                                      CORRELATED_DEMO)),
                        reverse=True)
    assert [r.score for r in ranked] == exhaustive


def test_top_k_without_embedder_extra_and_ties() -> None:
    pool = DemoPool()
    for demo in UNRELATED_DEMOS:
        pool.add(demo)
    slower_twin = Demonstration(CORRELATED_DEMO.original_sql.replace("products", "goods"), "y", 3.0)
    ranked = pool.top_k(CORRELATED, k=2, extra=[slower_twin, CORRELATED_DEMO])
    assert [r.demonstration for r in ranked] == [CORRELATED_DEMO, slower_twin]  # tie: faster first
    assert len(pool) == 3  # extra is not added to the pool
    assert pool.top_k(CORRELATED, k=0) == []
    assert DemoPool().top_k(CORRELATED) == []


def test_pruned_ranking_equals_exhaustive_ranking() -> None:
    shapes = ["t.a = 1", "t.b > 2", "t.c IN (SELECT x FROM u WHERE u.k = t.k)", "lower(t.d) LIKE 'x%'",
              "EXISTS (SELECT 1 FROM v WHERE v.a = t.a)", "t.e::date = '2024-01-01'", "t.f BETWEEN 1 AND 9"]
    demos = [Demonstration(f"SELECT {'count(*)' if i % 3 else 't.a'} FROM t{' JOIN w ON w.id = t.id' * (i % 2)} "
                           f"WHERE {' AND '.join(shapes[(i + j * 3) % len(shapes)] for j in range(1 + i % 4))}",
                           "r", 1.5 + (i % 4)) for i in range(40)]
    pool = DemoPool()
    for demo in demos:
        pool.add(demo)
    for query in (CORRELATED, demos[7].original_sql.replace("t.", "s."), "SELECT 1"):
        ranked = pool.top_k(query, k=3)
        exhaustive = sorted(pool.demonstrations(), key=lambda d: (-structural_similarity(query, d.original_sql),
                                                                  -d.speedup, d.original_sql))
        assert [r.demonstration for r in ranked] == exhaustive[:3]


# -- demonstrations from a database -----------------------------------------------------------------

DB = "laser_retrieval_test"
OUTSIDER = "retrieval_outsider"


@pytest.fixture(scope="module")
def demo_db(cluster: LocalCluster) -> Iterator[dict[str, str]]:
    """A database with a `laser.demonstrations` view, and DSNs for a superuser and an unprivileged role."""
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    cluster.psql("-c", f"CREATE DATABASE {DB}")
    cluster.psql("-c", f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OUTSIDER}') "
                       f"THEN CREATE ROLE {OUTSIDER} LOGIN; END IF; END $$")
    cluster.psql("-c", """
CREATE SCHEMA laser;
CREATE VIEW laser.demonstrations AS
SELECT * FROM (VALUES
    ('SELECT 1 FROM a', 'SELECT 1 FROM a LIMIT 1', 2.5::numeric, 'seed'),
    ('SELECT 2 FROM b', 'SELECT 2 FROM b LIMIT 1', 12.0::numeric, NULL),
    ('SELECT 3 FROM c', 'SELECT 3 FROM c LIMIT 1', 4.0::numeric, 'seed'),
    ('SELECT 4 FROM d', NULL, 9.0::numeric, 'broken')
) v(original_sql, rewritten_sql, speedup, source);
""", dbname=DB)
    yield {"admin": cluster.dsn(DB), "outsider": cluster.dsn(DB, OUTSIDER)}
    if not os.environ.get("LASER_TEST_KEEP_CLUSTER"):
        cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def test_load_demonstrations_reads_the_view(demo_db: dict[str, str]) -> None:
    with psycopg.connect(demo_db["admin"], autocommit=True) as conn:
        demos = load_demonstrations(conn)
        assert [(d.original_sql, d.speedup, d.source) for d in demos] == [
            ("SELECT 2 FROM b", 12.0, ""), ("SELECT 3 FROM c", 4.0, "seed"), ("SELECT 1 FROM a", 2.5, "seed")]
        assert all(d.origin == "database" and isinstance(d.speedup, float) for d in demos)
        # The limit applies to rows read; a row with a null rewrite is read and skipped.
        assert [d.original_sql for d in load_demonstrations(conn, limit=2)] == ["SELECT 2 FROM b"]


def test_load_demonstrations_inside_a_read_only_transaction(demo_db: dict[str, str]) -> None:
    with psycopg.connect(demo_db["admin"]) as conn:
        conn.read_only = True
        conn.execute("SELECT 1")
        assert len(load_demonstrations(conn)) == 3
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()


def test_load_demonstrations_without_the_view(demo_db: dict[str, str]) -> None:
    with psycopg.connect(demo_db["admin"]) as conn:
        conn.execute("DROP VIEW laser.demonstrations")  # rolled back below
        assert load_demonstrations(conn) == []
        conn.execute("DROP SCHEMA laser")
        assert load_demonstrations(conn) == []
        conn.rollback()
        assert len(load_demonstrations(conn)) == 3


def test_load_demonstrations_without_permission(demo_db: dict[str, str]) -> None:
    with psycopg.connect(demo_db["outsider"]) as conn:
        conn.execute("SELECT 1")  # inside a transaction: it must stay usable
        assert load_demonstrations(conn) == []
        assert conn.execute("SELECT 2").fetchone() == (2,)
    with psycopg.connect(demo_db["outsider"]) as conn:  # idle, not autocommit
        assert load_demonstrations(conn) == []
        assert conn.execute("SELECT 3").fetchone() == (3,)
    with psycopg.connect(demo_db["outsider"], autocommit=True) as conn:
        assert load_demonstrations(conn) == []
