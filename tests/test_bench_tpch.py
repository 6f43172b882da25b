"""TPC-H for `laser bench`: generation, loading and the 22-query workload, on the real test cluster (SF 0.01)."""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from benchdata import Loaded, load_dataset
from psycopg import sql

from laser.bench import tpch
from laser.bench.csvdata import DatasetError
from laser.bench.workloads import BenchQuery
from laser.localdb import LocalCluster

DB = "laser_bench_tpch_test"
SCALE = 0.01
EXPECTED_ROWS = {  # TPC-H v3 §4.2.5 cardinalities at SF 0.01 (lineitem: dbgen's exact count)
    "region": 5, "nation": 25, "supplier": 100, "customer": 1500, "part": 2000,
    "partsupp": 8000, "orders": 15000, "lineitem": 60175,
}
FK_INDEXES = {
    "nation_n_regionkey_idx", "supplier_s_nationkey_idx", "customer_c_nationkey_idx",
    "partsupp_ps_suppkey_idx", "orders_o_custkey_idx", "lineitem_l_partkey_idx",
    "lineitem_l_suppkey_idx", "lineitem_l_partkey_suppkey_idx",
}
WORKLOAD = tpch.queries(instances=2, seed=1, scale=SCALE)


@pytest.fixture(scope="module")
def loaded(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    yield from load_dataset(tpch, cluster, tmp_path_factory, DB, SCALE)


@pytest.fixture(scope="module")
def conn(loaded: Loaded) -> Iterator[psycopg.Connection]:
    with psycopg.connect(loaded.dsn, autocommit=True) as connection:
        connection.execute("SET statement_timeout = '60s'")
        yield connection


# -- data ------------------------------------------------------------------------------------------

def test_generate_writes_all_tables_and_skips_when_complete(loaded: Loaded) -> None:
    prefixes = {"region": "r_", "nation": "n_", "supplier": "s_", "customer": "c_", "part": "p_",
                "partsupp": "ps_", "orders": "o_", "lineitem": "l_"}
    for table, prefix in prefixes.items():
        header = (loaded.data_dir / f"{table}.csv").open().readline()
        assert header.startswith(f"{prefix}"), (table, header)  # CSV with a header row
    assert (loaded.data_dir / tpch.COMPLETION_MARKER).is_file()
    lines: list[str] = []
    started = time.monotonic()
    assert tpch.generate(SCALE, loaded.data_dir, lines.append) == loaded.data_dir
    assert time.monotonic() - started < 1.0
    assert any("already generated" in line for line in lines), lines


def test_missing_generator_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DatasetError, match="tpchgen-cli"):
        tpch.generate(SCALE, tmp_path / "data")


def test_load_reports_rows_per_table(loaded: Loaded) -> None:
    assert loaded.counts == EXPECTED_ROWS
    assert tpch.load_counts(loaded.dsn) == EXPECTED_ROWS
    assert any(line.startswith("loading lineitem (") for line in loaded.progress), loaded.progress
    assert any(re.match(r"lineitem: 60175 rows in [\d.]+ s", line) for line in loaded.progress), loaded.progress


def test_primary_keys_only(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT c.relname, i.indisprimary, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(%s)", [list(tpch.TABLES)]).fetchall()
    assert sorted(r[0] for r in rows) == sorted(tpch.TABLES)  # one index per table
    assert all(r[1] for r in rows), rows
    definitions = {r[0]: r[2] for r in rows}
    assert "(ps_partkey, ps_suppkey)" in definitions["partsupp"]
    assert "(l_orderkey, l_linenumber)" in definitions["lineitem"]
    foreign = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN"
        " (SELECT oid FROM pg_class WHERE relname = ANY(%s))", [list(tpch.TABLES)]).fetchone()
    assert foreign == (0,)


def test_fk_indexes_are_optional_and_idempotent(conn: psycopg.Connection) -> None:
    try:
        tpch.create_fk_indexes(conn)
        tpch.create_fk_indexes(conn)  # IF NOT EXISTS
        names = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s)", [list(tpch.TABLES)])}
        assert names >= FK_INDEXES
        assert len(names) == len(FK_INDEXES) + len(tpch.TABLES)
    finally:
        for name in FK_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {name}")


# -- the workload ----------------------------------------------------------------------------------

def test_workload_shape() -> None:
    assert [q.id for q in WORKLOAD[:22]] == [f"q{n:02d}" for n in range(1, 23)]
    assert [q.id for q in WORKLOAD[22:]] == [f"q{n:02d}_2" for n in range(1, 23)]
    assert all(q.template == q.id.split("_")[0] for q in WORKLOAD)
    titles = {t.name: t.title for t in tpch.templates()}
    assert titles["q17"] == "Small-Quantity-Order Revenue"
    assert WORKLOAD[16].params == {":1": "Brand#23", ":2": "MED BOX"}
    assert WORKLOAD[19].params == {":1": "forest", ":2": "1994-01-01", ":3": "CANADA"}
    assert WORKLOAD[10].params[":2"] == "0.01"  # Q11 FRACTION = 0.0001 / SF


def test_no_placeholder_remains_and_one_statement_each() -> None:
    for query in WORKLOAD:
        assert not re.search(r"(?<![\w:]):\d", query.sql), query.id
        assert ";" not in query.sql, query.id
        assert query.sql.lstrip().lower().startswith(("select", "with")), query.id
        assert not query.sql.lstrip().startswith("--"), query.id


def test_substitute_keeps_multi_digit_placeholders_apart() -> None:
    params = {f":{n}": f"v{n}" for n in range(1, 11)}
    assert tpch.substitute("a = ':1' and b in (:10, :1) and c::text = 'x'", params) == \
        "a = 'v1' and b in (v10, v1) and c::text = 'x'"
    with pytest.raises(ValueError):
        tpch.substitute("x = ':2'", {":1": "a"})
    with pytest.raises(ValueError):
        tpch.substitute("x = ':1'", {":1": "it's"})


def test_deterministic_for_a_seed() -> None:
    first = tpch.queries(2, seed=1)
    assert first == tpch.queries(2, seed=1)
    other = tpch.queries(2, seed=2)
    assert first[:22] == other[:22]  # instance 1: validation parameters, whatever the seed
    assert [q.sql for q in first[22:]] != [q.sql for q in other[22:]]
    assert tpch.queries(3, seed=1)[:44] == first  # instance k does not depend on the count


def test_random_parameters_follow_the_rules() -> None:
    for instance in range(2, 40):
        q7 = tpch.random_params("q07", 5, instance)
        assert q7[0] != q7[1] and set(q7) <= set(tpch.NATION_NAMES)
        q8 = tpch.random_params("q08", 5, instance)
        assert q8[1] == tpch.REGIONS[dict(tpch.NATIONS)[q8[0]]]
        q16 = tpch.random_params("q16", 5, instance)
        assert len(set(q16[2:])) == 8 and all(1 <= int(s) <= 50 for s in q16[2:])
        assert re.fullmatch(r"Brand#[1-5][1-5]", q16[0])
        q22 = tpch.random_params("q22", 5, instance)
        assert len(set(q22)) == 7 and all(10 <= int(c) <= 34 for c in q22)
        q4 = tpch.random_params("q04", 5, instance)[0]
        assert "1993-01-01" <= q4 <= "1997-10-01" and q4.endswith("-01")
        q10 = tpch.random_params("q10", 5, instance)[0]
        assert "1993-02-01" <= q10 <= "1995-01-01"
        assert 312 <= int(tpch.random_params("q18", 5, instance)[0]) <= 315
        q12 = tpch.random_params("q12", 5, instance)
        assert q12[0] != q12[1]


@pytest.mark.parametrize("query", WORKLOAD, ids=lambda q: q.id)
def test_every_query_explains_and_runs(conn: psycopg.Connection, query: BenchQuery) -> None:
    plan = conn.execute(sql.SQL("EXPLAIN ") + sql.SQL(query.sql)).fetchall()
    assert plan and plan[0][0]
    result = conn.execute(query.sql)
    assert result.description, "a query returns columns"
    result.fetchall()


ROW_COUNTS = {  # instance 1 (validation parameters) at SF 0.01: (min, max) rows
    "q01": (4, 4), "q02": (0, 100), "q03": (1, 10), "q04": (5, 5), "q05": (1, 5), "q06": (1, 1),
    "q07": (1, 4), "q08": (1, 2), "q09": (1, 25 * 7), "q10": (1, 20), "q12": (2, 2), "q13": (1, 100),
    "q14": (1, 1), "q15": (1, 100), "q16": (1, 10_000), "q17": (1, 1), "q18": (0, 100), "q19": (1, 1),
    "q21": (0, 100), "q22": (1, 7),
}


@pytest.mark.parametrize("template", sorted(ROW_COUNTS))
def test_validation_instances_return_plausible_rows(conn: psycopg.Connection, template: str) -> None:
    query = next(q for q in WORKLOAD if q.id == template)
    rows = conn.execute(query.sql).fetchall()
    low, high = ROW_COUNTS[template]
    assert low <= len(rows) <= high, (template, len(rows))
    if template == "q01":
        assert [(r[0], r[1]) for r in rows] == [("A", "F"), ("N", "F"), ("N", "O"), ("R", "F")]
        assert sum(r[-1] for r in rows) <= EXPECTED_ROWS["lineitem"]
    if template == "q04":
        assert [r[0].strip() for r in rows] == ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
    if template == "q12":
        assert [r[0].strip() for r in rows] == ["MAIL", "SHIP"]
    if template == "q14":
        assert 0 < rows[0][0] < 100
    if template == "q06":
        assert rows[0][0] > 0
