"""A generated benchmark data set loaded into a fresh database of the test cluster (TPC-H, TPC-DS tests)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from laser.localdb import LocalCluster


@dataclass(frozen=True)
class Loaded:
    dsn: str
    data_dir: Path
    counts: dict[str, int]
    progress: list[str]


def load_dataset(module: ModuleType, cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory,
                 db: str, scale: float, fk_indexes: bool = False) -> Iterator[Loaded]:
    """Generate `module`'s data at `scale`, load it into `db` (dropped first and afterwards), yield it."""
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    cluster.psql("-c", f"CREATE DATABASE {db}")
    data_dir = tmp_path_factory.mktemp(db) / f"sf{scale:g}"
    lines: list[str] = []
    started = time.monotonic()
    module.generate(scale, data_dir, lines.append)
    generated = time.monotonic()
    counts = module.load(cluster.dsn(db), data_dir, fk_indexes=fk_indexes, progress=lines.append)
    lines.append(f"[test] generate {generated - started:.2f} s, load {time.monotonic() - generated:.2f} s")
    yield Loaded(cluster.dsn(db), data_dir, counts, lines)
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
