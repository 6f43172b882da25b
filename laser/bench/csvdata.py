"""Generated CSV data sets: run a generator once per scale factor, stream the files into PostgreSQL.

TPC-H (`tpch.py`) and TPC-DS (`tpcds.py`) differ in their generator's command line, their tables
and their SQL files; what they share is here: finding the generator, knowing when a directory
already holds a finished generation, and loading (drop, create, COPY, primary keys, optional
indexes, ANALYZE).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

Progress = Callable[[str], None]
COPY_CHUNK = 1 << 20  # 1 MiB


class DatasetError(RuntimeError):
    """The data cannot be generated or loaded; the message says why."""


def scale_text(scale: object, name: str = "the") -> str:
    """A positive, finite scale factor as the generators write it; DatasetError otherwise.

    >>> scale_text(1.0), scale_text(0.01)
    ('1', '0.01')
    """
    try:
        value = float(scale)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{name} scale factor must be a number, got {scale!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise DatasetError(f"{name} scale factor must be a positive number, got {scale!r}")
    return f"{value:g}"


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


@dataclass(frozen=True)
class CsvDataSet:
    """One generator's tables: `<table>.csv` files with a header row, loaded in `tables` order."""

    name: str
    """As people write it: "TPC-H"."""
    tool: str
    """The generator's executable (installed by the pip package of the same name)."""
    tables: tuple[str, ...]
    sql_dir: Path
    """Holds schema.sql (the tables) and keys.sql (their primary keys)."""
    marker: str
    """File written into a directory after a finished generation: the scale and every file's size."""

    def find_tool(self) -> str:
        """The generator next to this Python interpreter (its venv's bin/) first, then on PATH."""
        beside = Path(sys.executable).parent / self.tool
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
        found = shutil.which(self.tool)
        if found:
            return found
        raise DatasetError(f"{self.tool} not found next to {sys.executable} or on PATH; "
                           f"install it with: pip install {self.tool}")

    def complete(self, directory: Path, scale: str) -> bool:
        """Whether `directory` holds a finished generation of `scale` (marker and file sizes agree)."""
        try:
            recorded = json.loads((directory / self.marker).read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(recorded, dict) or recorded.get("scale") != scale:
            return False
        sizes = recorded.get("bytes", {})
        return all((directory / f"{t}.csv").is_file() and (directory / f"{t}.csv").stat().st_size == sizes.get(t)
                   for t in self.tables)

    def generate(self, arguments: Sequence[str], directory: Path, scale: str,
                 progress: Progress | None = None) -> Path:
        """Run the generator with `arguments` to fill `directory`, unless it already holds `scale`."""
        say = progress or (lambda _line: None)
        directory = Path(directory)
        if self.complete(directory, scale):
            say(f"{self.name} SF {scale} already generated in {directory}")
            return directory
        tool = self.find_tool()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / self.marker).unlink(missing_ok=True)
        for table in self.tables:
            (directory / f"{table}.csv").unlink(missing_ok=True)
        command = [tool, *arguments]
        say(f"generating {self.name} SF {scale} into {directory}…")
        started = time.monotonic()
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True)
        except OSError as exc:
            raise DatasetError(f"could not run {tool}: {exc}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-2000:]
            raise DatasetError(f"{self.tool} failed (exit {done.returncode}): {' '.join(command)}\n{detail}")
        missing = [t for t in self.tables if not (directory / f"{t}.csv").is_file()]
        if missing:
            raise DatasetError(f"{self.tool} did not write {', '.join(f'{t}.csv' for t in missing)} in {directory}")
        sizes = {t: (directory / f"{t}.csv").stat().st_size for t in self.tables}
        (directory / self.marker).write_text(json.dumps({"scale": scale, "bytes": sizes}, indent=1) + "\n")
        say(f"generated {self.name} SF {scale} ({megabytes(sum(sizes.values()))}) "
            f"in {time.monotonic() - started:.1f} s")
        return directory

    def load(self, dsn: str, csv_dir: Path, indexes: Sequence[str | sql.SQL | sql.Composed] = (),
             progress: Progress | None = None) -> dict[str, int]:
        """Load `csv_dir` into the database at `dsn`; returns the rows per table.

        Drops the tables if they exist, creates them (schema.sql), streams each file from this
        client (`COPY … FROM STDIN`, so the server needs no access to `csv_dir`; an empty unquoted
        field is NULL), adds the primary keys (keys.sql), runs the `indexes` statements, ANALYZEs.
        Each COPY follows a TRUNCATE in its transaction, so it writes the rows frozen and no VACUUM
        is needed before index-only scans. Raises DatasetError for a missing file or a failed statement.
        """
        say = progress or (lambda _line: None)
        csv_dir = Path(csv_dir)
        missing = [t for t in self.tables if not (csv_dir / f"{t}.csv").is_file()]
        if missing:
            raise DatasetError(f"{csv_dir} lacks {', '.join(f'{t}.csv' for t in missing)}; generate the data first")
        names = sql.SQL(", ").join(sql.Identifier(t) for t in self.tables)
        rows: dict[str, int] = {}
        started = time.monotonic()
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET maintenance_work_mem = '512MB'")
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(names))
                conn.execute((self.sql_dir / "schema.sql").read_text())  # several statements, no parameters
                for table in self.tables:
                    rows[table] = self._copy(conn, table, csv_dir / f"{table}.csv", say)
                begun = time.monotonic()
                conn.execute((self.sql_dir / "keys.sql").read_text())
                say(f"primary keys in {time.monotonic() - begun:.1f} s")
                if indexes:
                    begun = time.monotonic()
                    for statement in indexes:
                        conn.execute(statement)
                    say(f"{len(indexes)} foreign-key index statement(s) in {time.monotonic() - begun:.1f} s")
                begun = time.monotonic()
                conn.execute(sql.SQL("ANALYZE {}").format(names))
                say(f"analyzed in {time.monotonic() - begun:.1f} s")
        except psycopg.Error as exc:
            raise DatasetError(f"loading {self.name} into the database failed: {exc}") from exc
        say(f"loaded {sum(rows.values()):,} rows in {time.monotonic() - started:.1f} s")
        return rows

    @staticmethod
    def _copy(conn: psycopg.Connection, table: str, path: Path, say: Progress) -> int:
        say(f"loading {table} ({megabytes(path.stat().st_size)})…")
        begun = time.monotonic()
        copy = sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv, HEADER true, NULL '', ENCODING 'UTF8', "
                       "FREEZE true)").format(sql.Identifier(table))
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
            with path.open("rb") as source, cur.copy(copy) as writer:
                while chunk := source.read(COPY_CHUNK):
                    writer.write(chunk)
            count = cur.rowcount
            if count < 0:
                count = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(table))).fetchone()[0])  # type: ignore[index]
        say(f"{table}: {count} rows in {time.monotonic() - begun:.1f} s")
        return count

    def counts(self, dsn: str) -> dict[str, int]:
        """Rows per table in the database at `dsn` (exact counts)."""
        with psycopg.connect(dsn) as conn:
            return {t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(  # type: ignore[index]
                sql.Identifier(t))).fetchone()[0]) for t in self.tables}
