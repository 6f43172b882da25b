"""The built-in workloads' databases in the local cluster: generated, loaded once, reused.

Each (workload, scale) gets its own database, `laser_bench_tpch_sf1` for instance. What was loaded
is written in the database's comment, so a later run reuses it and a run with other options (scale
is in the name; foreign-key indexes are in the comment) reloads it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from laser import demo
from laser.bench.workloads import BenchQuery
from laser.localdb import LocalCluster

BUILTIN = ("demo", "tpch", "tpcds")

Progress = Callable[[str], None]


def scale_text(scale: float) -> str:
    """A scale factor as it appears in names: 1 → "1", 0.1 → "0_1".

    >>> scale_text(1.0), scale_text(0.1), scale_text(10)
    ('1', '0_1', '10')
    """
    text = f"{scale:g}"
    return text.replace(".", "_")


def database_name(workload: str, scale: float) -> str:
    return demo.DEMO_DB if workload == "demo" else f"laser_bench_{workload}_sf{scale_text(scale)}"


def _module(workload: str) -> Any:
    if workload == "tpch":
        from laser.bench import tpch
        return tpch
    if workload == "tpcds":
        from laser.bench import tpcds
        return tpcds
    raise ValueError(f"unknown built-in workload {workload!r}; choose one of {', '.join(BUILTIN)}")


def queries(workload: str, instances: int = 1, seed: int = 1, scale: float = 1.0) -> list[BenchQuery]:
    """The built-in workload's queries (some parameters depend on the scale factor: TPC-H Q11, TPC-DS q36, q44)."""
    if workload == "demo":
        if instances != 1:
            raise ValueError("the demo workload has one instance per query")
        return [BenchQuery(q.name, q.sql, q.name) for q in demo.demo_queries()]
    return list(_module(workload).queries(instances=instances, seed=seed, scale=scale))


def _loaded(cluster: LocalCluster, name: str) -> dict[str, Any] | None:
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()
    if row is None:
        return None
    try:
        marker = json.loads(row[0] or "{}")
    except json.JSONDecodeError:
        return {}
    return marker.get("laser_bench", {}) if isinstance(marker, dict) else {}


def ensure(cluster: LocalCluster, workload: str, scale: float, fk_indexes: bool = False,
           reload: bool = False, progress: Progress = print) -> str:
    """The superuser conninfo of the workload's database, generating and loading it if needed."""
    name = database_name(workload, scale)
    if workload == "demo":
        demo.ensure_demo_database(cluster)
        return cluster.dsn(name)
    module = _module(workload)
    if scale <= 0:
        raise ValueError("the scale factor must be positive")
    marker = _loaded(cluster, name)
    wanted = {"workload": workload, "scale": scale, "fk_indexes": fk_indexes}
    if marker is not None and not reload and {k: marker.get(k) for k in wanted} == wanted and marker.get("rows"):
        progress(f"using {name} (loaded {marker.get('loaded_at', '?')})")
        return cluster.dsn(name)
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        if marker is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    work = Path(tempfile.mkdtemp(prefix=f"{workload}-sf{scale_text(scale)}-", dir=_scratch_dir(cluster)))
    try:
        progress(f"generating {workload} data at scale factor {scale:g}…")
        csv_dir = module.generate(scale, work, progress=progress)
        rows = module.load(cluster.dsn(name), csv_dir, fk_indexes=fk_indexes, progress=progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from datetime import datetime

    marker = {**wanted, "rows": rows, "loaded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(json.dumps({"laser_bench": marker}))))
    return cluster.dsn(name)


def _scratch_dir(cluster: LocalCluster) -> Path:
    path = cluster.state_dir / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path
