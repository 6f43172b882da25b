"""Generated schemas (model/corpus/synth.py) loaded into real PostgreSQL: declared keys, skewed
data, the same rows for the same seed, and seeds that grow on them."""
from __future__ import annotations

import io
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from laser import demo
from laser.localdb import LocalCluster
from model.corpus import synth
from model.corpus.build import CorpusConfig, build
from model.corpus.search import SearchConfig

SEED = 2
SCALE = 0.05


def _load(cluster: LocalCluster, name: str) -> str:
    cluster.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    cluster.ensure_database(name)
    cluster.psql("-f", "-", dbname=name, stdin=synth.script(synth.design(SEED, SCALE), SEED))
    cluster.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
        sql.Identifier(demo.DEMO_ROLE)), dbname=name)
    return cluster.dsn(name, demo.DEMO_ROLE)


@pytest.fixture(scope="module")
def loaded(cluster: LocalCluster) -> tuple[str, str]:
    return _load(cluster, "laser_synth_test_a"), _load(cluster, "laser_synth_test_b")


def _fingerprint(dsn: str, tables: list[synth.Table]) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [conn.execute(sql.SQL("SELECT md5(string_agg(t::text, ',' ORDER BY 1)) FROM {} AS t").format(
            sql.Identifier(t.name))).fetchone()[0] for t in tables]


def test_keys_are_declared_and_the_data_is_skewed(loaded: tuple[str, str]) -> None:
    tables = synth.design(SEED, SCALE)
    with psycopg.connect(loaded[0]) as conn:
        declared = conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                                "AND connamespace = 'public'::regnamespace").fetchone()[0]
        assert declared == sum(len(t.references) for t in tables) > 0
        for table in tables:
            assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))).fetchone()[0] \
                == table.rows
        fact = tables[-1]
        column, parent = fact.references[0]
        parents = next(t.rows for t in tables if t.name == parent)
        top = conn.execute(sql.SQL("SELECT max(n) FROM (SELECT count(*) AS n FROM {} GROUP BY {}) AS c").format(
            sql.Identifier(fact.name), sql.Identifier(column))).fetchone()[0]
    assert top > 3 * fact.rows / parents  # the most referenced parent: far above a uniform share (~1.1x)


def test_the_same_seed_gives_the_same_rows(loaded: tuple[str, str]) -> None:
    tables = synth.design(SEED, SCALE)
    assert _fingerprint(loaded[0], tables) == _fingerprint(loaded[1], tables)


def test_seeds_generated_on_a_synthetic_schema_grow(loaded: tuple[str, str], tmp_path: Path) -> None:
    config = CorpusConfig(workers=1, search=SearchConfig(iterations=2, width=2, max_depth=1))
    summary = build(loaded[0], [], tmp_path / "s.jsonl", config, log=io.StringIO(), generate_seeds=1)
    assert summary.seeds_done == 1 and summary.variants >= 1, summary


def test_bad_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="scale"):
        synth.design(1, 0)
