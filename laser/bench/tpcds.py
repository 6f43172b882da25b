"""TPC-DS for `laser bench`: the data set (generated offline), its loader, and the 99 query templates.

Data comes from `tpcgen-cli` (PyPI package `tpcgen-cli`, a Rust port of TPC's dsdgen): `tpcgen-cli
tpcds csv -s SCALE` writes one CSV per table with a header line, in the column order of
sql/tpcds/schema.sql. Any positive scale factor is accepted (SF 1: 19.6 M rows, 1.2 GB of CSV);
dsdgen's row counts have floors, so scales below 0.01 give nearly the same ~130 MB as 0.01
(customer_demographics, date_dim and time_dim have a fixed size at every scale). A NULL is an
empty unquoted field, and the generator never writes an empty string (`""`), so COPY's CSV
default (unquoted empty = NULL) reads it exactly.

Queries come from TPC's own query generator (dsqgen/qgen2 4.0.0) and the 99 official templates,
both shipped inside the `benchbox` wheel, so nothing is fetched at run time. dsqgen runs once per
call with all templates, one stream per instance and the given seed; stream k's substitutions do
not depend on how many streams are generated, so instance 1 is the same for every `instances`.
The output is then made PostgreSQL-ready (`_postgres_fixes`): `cast(… as date) + 30 days` becomes
date + integer, derived tables without an alias (PostgreSQL 15 requires one) get one, ORDER BY
expressions over an output alias spell out the expression, and integer ratios the templates mean
as decimals divide as numeric. Each query is one SELECT that parses and EXPLAINs on PostgreSQL 15
against schema.sql.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from psycopg import sql

from laser.bench.csvdata import CsvDataSet, DatasetError, scale_text
from laser.bench.workloads import BenchQuery
from laser.localdb import project_root

Progress = Callable[[str], None]

SQL_DIR = project_root() / "sql" / "tpcds"
SCHEMA_FILE = SQL_DIR / "schema.sql"
KEYS_FILE = SQL_DIR / "keys.sql"

TABLES = (
    "call_center", "catalog_page", "catalog_returns", "catalog_sales", "customer", "customer_address",
    "customer_demographics", "date_dim", "household_demographics", "income_band", "inventory", "item",
    "promotion", "reason", "ship_mode", "store", "store_returns", "store_sales", "time_dim", "warehouse",
    "web_page", "web_returns", "web_sales", "web_site",
)
"""The 24 tables of the TPC-DS schema (the generator's `dbgen_version` is not one of them)."""

FK_INDEXES: dict[str, tuple[str, ...]] = {
    "store_sales": ("ss_sold_date_sk", "ss_customer_sk"),
    "store_returns": ("sr_returned_date_sk", "sr_customer_sk"),
    "catalog_sales": ("cs_sold_date_sk", "cs_ship_date_sk", "cs_bill_customer_sk", "cs_ship_customer_sk"),
    "catalog_returns": ("cr_returned_date_sk", "cr_refunded_customer_sk", "cr_returning_customer_sk"),
    "web_sales": ("ws_sold_date_sk", "ws_ship_date_sk", "ws_bill_customer_sk", "ws_ship_customer_sk"),
    "web_returns": ("wr_returned_date_sk", "wr_refunded_customer_sk", "wr_returning_customer_sk"),
    "inventory": ("inv_item_sk",),
}
"""Indexes `load(fk_indexes=True)` adds on the fact tables' date and customer keys. The item keys
need none of their own: each fact table's primary key starts with its item key (inventory's with
its date key, so inventory gets an item index)."""

MULTI_PART = (14, 23, 24, 39)
"""Templates that hold two statements; they become `q14a` and `q14b` and so on."""

GENERATOR = "tpcgen-cli"
MARKER = ".laser-tpcds-complete"


DATA = CsvDataSet("TPC-DS", GENERATOR, TABLES, SQL_DIR, MARKER)


# -- data -----------------------------------------------------------------------------------------

def generate(scale: float, directory: Path, progress: Progress | None = None) -> Path:
    """Write one CSV per TPC-DS table (`<table>.csv`, with a header line) for `scale` into `directory`.

    Runs `tpcgen-cli tpcds csv`. A directory holding a finished generation of the same scale (a
    marker file written after a successful run, and the files it lists at their sizes) is left as
    it is. Returns `directory`. Raises DatasetError when the scale is not a positive number, the
    generator is missing or fails, or a table's file is missing afterwards.
    """
    value = scale_text(scale, "the TPC-DS")
    command = ["tpcds", "csv", "--scale-factor", value, "--output-dir", str(directory),
               "--tables", ",".join(TABLES), "--overwrite", "--no-progress", "--quiet"]
    return DATA.generate(command, Path(directory), value, progress)


def load(dsn: str, csv_dir: Path, fk_indexes: bool = False, progress: Progress | None = None) -> dict[str, int]:
    """Load the generated CSVs of `csv_dir` into the database at `dsn`; return the rows per table.

    Primary keys only (sql/tpcds/keys.sql); `fk_indexes` adds the indexes of FK_INDEXES. An empty
    unquoted CSV field loads as NULL (the generator's NULL).
    """
    indexes = [sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                   sql.Identifier(f"{table}_{column}_idx"), sql.Identifier(table), sql.Identifier(column))
               for table, columns in FK_INDEXES.items() for column in columns] if fk_indexes else []
    return DATA.load(dsn, csv_dir, indexes, progress)


def table_counts(dsn: str) -> dict[str, int]:
    """Rows per TPC-DS table in the database at `dsn` (exact counts)."""
    return DATA.counts(dsn)


# -- queries --------------------------------------------------------------------------------------

_DIALECT = """\
define __LIMITA = "";
define __LIMITB = "";
define __LIMITC = "limit %d";
define _BEGIN = "-- laser-begin " + [_TEMPLATE];
define _END = "-- laser-end " + [_TEMPLATE];
"""
"""A dsqgen dialect for PostgreSQL: LIMIT at the end, and markers around each template's text."""

_BLOCK = re.compile(r"^-- laser-begin query(\d+)\.tpl\s*$(.*?)^-- laser-end query\1\.tpl\s*$",
                    re.MULTILINE | re.DOTALL)


def _dsqgen() -> tuple[Path, Path]:
    """dsqgen and the directory of the official query templates, from the benchbox wheel."""
    try:
        from benchbox.core.tpcds.c_tools import DSQGenBinary
    except ImportError as exc:
        raise DatasetError(f"TPC-DS queries need benchbox (pip install benchbox): {exc}") from exc
    try:
        located = DSQGenBinary()
    except Exception as exc:  # benchbox raises RuntimeError, or its own errors, when its bundle lacks a platform
        raise DatasetError(f"benchbox has no usable dsqgen for this platform: {exc}") from exc
    return Path(located.dsqgen_path), Path(located.templates_dir)


def _run_dsqgen(streams: int, seed: int, scale: float) -> tuple[list[str], str]:
    """Run dsqgen over the 99 templates; return each stream's text and the parameter log."""
    binary, templates = _dsqgen()
    distributions = binary.parent / "tpcds.idx"
    if not distributions.is_file():
        raise DatasetError(f"dsqgen's distributions file is missing: {distributions}")
    with tempfile.TemporaryDirectory(prefix="laser-dsqgen-") as work:
        base = Path(work)
        # dsqgen keeps paths in fixed-size buffers: give it short relative ones from its own cwd.
        staged = base / "t"
        staged.mkdir()
        for number in range(1, 100):
            shutil.copy2(templates / f"query{number}.tpl", staged / f"query{number}.tpl")
        (staged / "templates.lst").write_text("".join(f"query{n}.tpl\n" for n in range(1, 100)))
        (staged / "laserpg.tpl").write_text(_DIALECT)
        shutil.copy2(distributions, base / "tpcds.idx")
        (base / "o").mkdir()
        command = [str(binary), "-DIRECTORY", "t", "-INPUT", "t/templates.lst", "-DIALECT", "laserpg",
                   "-SCALE", f"{scale:g}", "-RNGSEED", str(seed), "-STREAMS", str(streams), "-OUTPUT_DIR", "o",
                   "-LOG", "o/params.log", "-QUIET", "Y"]
        try:
            # dsqgen finds its templates through DSS_QUERY; the rest of its environment is ours.
            done = subprocess.run(command, check=False, cwd=base, capture_output=True, text=True,
                                  timeout=300, env={**os.environ, "DSS_QUERY": str(base)})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DatasetError(f"dsqgen could not run: {exc}") from exc
        outputs = [base / "o" / f"query_{k}.sql" for k in range(streams)]
        if done.returncode != 0 or not all(p.is_file() for p in outputs):
            detail = (done.stderr or done.stdout).strip()[-2000:]
            raise DatasetError(f"dsqgen failed (exit {done.returncode}): {detail}")
        return [p.read_text() for p in outputs], (base / "o" / "params.log").read_text()


def _parse_params(log: str) -> dict[tuple[int, int], dict[str, str | list[str]]]:
    """dsqgen's -LOG as {(stream, template number): {NAME: value, or [values] for a list}}.

    Only the templates' own substitutions are kept, not dsqgen's (`_LIMIT`, `_BEGIN`, `_STREAM`, …).
    """
    raw: dict[tuple[int, int], dict[str, list[str]]] = {}
    stream = -1
    current: dict[str, list[str]] | None = None
    for line in log.splitlines():
        header = re.fullmatch(r"Template: query(\d+)\.tpl", line.strip())
        if line.startswith("BEGIN STREAM "):
            stream = int(line.split()[2])
        elif header is not None:
            current = raw.setdefault((stream, int(header.group(1))), {})
        elif current is not None and line.startswith("\t") and " = " in line:
            key, _, value = line.strip().partition(" = ")
            name = key.rpartition(".")[0]
            if name and not name.startswith("_"):
                current.setdefault(name, []).append(value.strip())
    return {key: {name: values[0] if len(values) == 1 else values for name, values in sorted(params.items())}
            for key, params in raw.items()}


def _copy(params: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
    return {name: list(value) if isinstance(value, list) else value for name, value in params.items()}


def _statements(text: str) -> list[str]:
    """A template's text split into its statements, without comments or the final semicolons."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    parts = re.split(r";\s*(?:\n|$)", "\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


def queries(instances: int = 1, seed: int = 1, scale: float = 1.0) -> list[BenchQuery]:
    """The 99 TPC-DS queries, `instances` times with other substitutions, for PostgreSQL.

    Ids are `q01`…`q99` for the first instance and `q01_2`… for the next ones (instance k is
    dsqgen's stream k-1); the templates with two statements (14, 23, 24, 39) give `q14a` and
    `q14b` and so on, one statement each, so one instance has 103 queries. The same (instances,
    seed, scale) always gives the same queries, and instance k is the same whatever `instances`
    is. `scale` is the scale factor of the data the queries will run on: a few templates draw
    from row counts (q44's store, q36's states). `params` holds dsqgen's substitution values.
    """
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise ValueError(f"instances must be a positive integer, got {instances!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    streams, log = _run_dsqgen(instances, seed, float(scale))
    params = _parse_params(log)
    result: list[BenchQuery] = []
    for stream, text in enumerate(streams):
        blocks = {int(m.group(1)): m.group(2) for m in _BLOCK.finditer(text)}
        if sorted(blocks) != list(range(1, 100)):
            raise DatasetError(f"dsqgen stream {stream} holds templates {sorted(blocks)}, not 1..99")
        suffix = "" if stream == 0 else f"_{stream + 1}"
        for number in range(1, 100):
            statements = _statements(blocks[number])
            expected = 2 if number in MULTI_PART else 1
            if len(statements) != expected:
                raise DatasetError(f"template {number} gave {len(statements)} statements, expected {expected}")
            names = [f"q{number:02d}a", f"q{number:02d}b"] if expected == 2 else [f"q{number:02d}"]
            for name, statement in zip(names, statements, strict=True):
                result.append(BenchQuery(f"{name}{suffix}", _postgres_fixes(name, statement), name,
                                         _copy(params.get((stream, number), {}))))
    return result


_DAYS = re.compile(r"\)(\s*)([+-])\s*(\d+)\s+days\b", re.IGNORECASE)
"""`cast('2000-01-27' as date) + 30 days` (dsqgen's netezza/ansi spelling) → `… + 30`, a date."""

_INTEGER_RATIOS = (
    # (pattern, replacement): ratios of integer sums or counts that the templates mean as decimals
    # (compared with 1.2 or 2.0/3.0, multiplied by 100); PostgreSQL would truncate them.
    (re.compile(r"\b(household_demographics\.hd_dep_count)(\s*/)", re.IGNORECASE), r"cast(\1 as numeric)\2"),
    (re.compile(r"\b(inv_after)(\s*/\s*inv_before)\b", re.IGNORECASE), r"cast(\1 as numeric)\2"),
    (re.compile(r"\bround\((ss_qty)(\s*/)", re.IGNORECASE), r"round(cast(\1 as numeric)\2"),
    (re.compile(r"(?<![+(\w])(\s*)((?:sr|cr|wr)_item_qty)(\s*/\s*\()", re.IGNORECASE), r"\1cast(\2 as numeric)\3"),
)

_NOT_AN_ALIAS = frozenset({
    "where", "group", "order", "union", "intersect", "except", "limit", "having", "on", "join", "inner",
    "left", "right", "full", "cross", "natural", "using", "window", "offset", "fetch",
})


def _closing_paren(text: str, start: int) -> int:
    """The index of the parenthesis that closes the one at `start` (the templates quote no parens)."""
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "(":
            depth += 1
        elif text[index] == ")":
            depth -= 1
            if depth == 0:
                return index
    raise DatasetError(f"unbalanced parentheses in a TPC-DS query: {text[start:start + 80]!r}")


def _alias_derived_tables(text: str) -> str:
    """Name each derived table that has no alias (PostgreSQL 15 requires one): `(select …) sqN`."""
    inserts: list[int] = []
    for match in re.finditer(r"\(\s*select\b", text, re.IGNORECASE):
        start = match.start()
        before = text[:start].rstrip()
        from_or_join = re.search(r"\b(from|join)$", before, re.IGNORECASE) is not None
        after_comma = before.endswith(",")
        if not (from_or_join or after_comma):
            continue
        end = _closing_paren(text, start)
        following = re.match(r"\s*(\w+|\S|$)", text[end + 1:])
        token = following.group(1).lower() if following else ""
        keyword = token in _NOT_AN_ALIAS
        # After `from`/`join` a derived table must be named; after a comma only a FROM-list item is
        # followed by a clause keyword (a select-list scalar subquery is followed by `,`, `from`, …).
        if (from_or_join and (keyword or not re.fullmatch(r"\w+", token))) or (after_comma and keyword):
            inserts.append(end + 1)
    for number, position in reversed(list(enumerate(inserts, start=1))):  # from the end: positions hold
        text = f"{text[:position]} sq{number}{text[position:]}"
    return text


def _order_by_grouping_alias(text: str) -> str:
    """`order by …, case when lochierarchy = 0 …`: PostgreSQL allows an output alias in ORDER BY
    only on its own, not inside an expression, so spell out the alias's grouping() expression."""
    definition = re.search(r",\s*(grouping\(\w+\)\s*\+\s*grouping\(\w+\))\s+as\s+lochierarchy\b", text, re.IGNORECASE)
    if definition is None:
        return text
    return re.sub(r"\bcase\s+when\s+lochierarchy\s*=", lambda _m: f"case when {definition.group(1)} =",
                  text, flags=re.IGNORECASE)


def _postgres_fixes(name: str, text: str) -> str:
    """Rewrite one dsqgen statement (netezza-style dialect) into SQL PostgreSQL 15 accepts.

    The changes keep each query's meaning: `date + N days` becomes date + integer; derived tables
    without an alias get one; ORDER BY expressions over the `lochierarchy` alias (q36, q70, q86)
    use the expression itself; integer ratios the templates mean as decimals (q21, q34, q73, q78,
    q83) divide as numeric. `name` is only used in error messages.
    """
    fixed = _DAYS.sub(r")\1\2 \3", text)
    for pattern, replacement in _INTEGER_RATIOS:
        fixed = pattern.sub(replacement, fixed)
    fixed = _alias_derived_tables(fixed)
    fixed = _order_by_grouping_alias(fixed)
    if re.search(r"\[\w+(\.\d+)?\]", fixed):
        raise DatasetError(f"{name}: dsqgen left a substitution unfilled")
    return fixed
