"""TPC-H for `laser bench`: the data set (generate, load) and the 22-query workload.

Data: `generate` runs `tpchgen-cli` (the PyPI package of the same name, a port of the official
dbgen) to write one CSV file per table; `load` streams them into PostgreSQL with client-side
COPY, then adds the primary keys and analyzes. The schema carries primary keys only, no foreign
keys and no other indexes (the papers' setting); `fk_indexes=True` adds the usual indexes on the
foreign-key columns.

Queries: `sql/tpch/templates/qNN.sql` are the 22 query templates of the TPC-H specification
(v3, §2.4) in PostgreSQL syntax, one read-only SELECT each (Q15's view is a CTE). Their
substitution parameters are written `:1`, `:2`, ... with the numbering of the specification's
qgen templates (the same as the order of the parameters in §2.4.N.3, except Q19, where :1-:3 are
the brands and :4-:6 the quantities); each template's header comments say which is which.

Quoting scheme: a template carries the SQL syntax around a parameter itself: string and date
parameters sit inside quotes in the template (`r_name = ':3'`, `date ':1'`, `like '%:1%'`),
numeric parameters stand bare (`p_size = :1`). The generators return plain value text (never
quoted), drawn from fixed lists that hold no quote characters, and `substitute` replaces each
`:N` token as a whole (`:1` never touches `:10`).

Instance 1 of every template uses the specification's validation (qualification) parameters;
instances 2..N draw random parameters by the specification's rules from a random.Random seeded
by (seed, template, instance), so each instance is reproducible on its own.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path

import psycopg

from laser.bench.csvdata import CsvDataSet, DatasetError, scale_text
from laser.bench.workloads import BenchQuery
from laser.localdb import project_root

SCHEMA_DIR = project_root() / "sql" / "tpch"
TEMPLATES_DIR = SCHEMA_DIR / "templates"

TABLES = ("region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem")
"""Load order: small tables first."""

COMPLETION_MARKER = ".laser-tpch-complete"

Progress = Callable[[str], None]




# -- the specification's value lists (TPC-H v3 §4.2.2.13, §4.2.3) -------------------------------

REGIONS = ("AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST")
NATIONS: tuple[tuple[str, int], ...] = (  # (N_NAME, N_REGIONKEY) in N_NATIONKEY order
    ("ALGERIA", 0), ("ARGENTINA", 1), ("BRAZIL", 1), ("CANADA", 1), ("EGYPT", 4),
    ("ETHIOPIA", 0), ("FRANCE", 3), ("GERMANY", 3), ("INDIA", 2), ("INDONESIA", 2),
    ("IRAN", 4), ("IRAQ", 4), ("JAPAN", 2), ("JORDAN", 4), ("KENYA", 0),
    ("MOROCCO", 0), ("MOZAMBIQUE", 0), ("PERU", 1), ("CHINA", 2), ("ROMANIA", 3),
    ("SAUDI ARABIA", 4), ("VIETNAM", 2), ("RUSSIA", 3), ("UNITED KINGDOM", 3), ("UNITED STATES", 1),
)
NATION_NAMES = tuple(name for name, _ in NATIONS)
SEGMENTS = ("AUTOMOBILE", "BUILDING", "FURNITURE", "MACHINERY", "HOUSEHOLD")
SHIP_MODES = ("REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB")
TYPE_SYLLABLE_1 = ("STANDARD", "SMALL", "MEDIUM", "LARGE", "ECONOMY", "PROMO")
TYPE_SYLLABLE_2 = ("ANODIZED", "BURNISHED", "PLATED", "POLISHED", "BRUSHED")
TYPE_SYLLABLE_3 = ("TIN", "NICKEL", "BRASS", "STEEL", "COPPER")
CONTAINER_SYLLABLE_1 = ("SM", "LG", "MED", "JUMBO", "WRAP")
CONTAINER_SYLLABLE_2 = ("CASE", "BOX", "BAG", "JAR", "PKG", "PACK", "CAN", "DRUM")
COLORS = (
    "almond", "antique", "aquamarine", "azure", "beige", "bisque", "black", "blanched", "blue",
    "blush", "brown", "burlywood", "burnished", "chartreuse", "chiffon", "chocolate", "coral",
    "cornflower", "cornsilk", "cream", "cyan", "dark", "deep", "dim", "dodger", "drab", "firebrick",
    "floral", "forest", "frosted", "gainsboro", "ghost", "goldenrod", "green", "grey", "honeydew",
    "hot", "indian", "ivory", "khaki", "lace", "lavender", "lawn", "lemon", "light", "lime", "linen",
    "magenta", "maroon", "medium", "metallic", "midnight", "mint", "misty", "moccasin", "navajo",
    "navy", "olive", "orange", "orchid", "pale", "papaya", "peach", "peru", "pink", "plum", "powder",
    "puff", "purple", "red", "rose", "rosy", "royal", "saddle", "salmon", "sandy", "seashell",
    "sienna", "sky", "slate", "smoke", "snow", "spring", "steel", "tan", "thistle", "tomato",
    "turquoise", "violet", "wheat", "white", "yellow",
)
Q13_WORD1 = ("special", "pending", "unusual", "express")
Q13_WORD2 = ("packages", "requests", "accounts", "deposits")
COUNTRY_CODES = tuple(str(key + 10) for key in range(len(NATIONS)))  # §4.2.2.9: nation key + 10


# -- parameter generators ------------------------------------------------------------------------

def _month_start(rng: random.Random, first: tuple[int, int], last: tuple[int, int]) -> str:
    """The first day of a month drawn uniformly from [first, last] (inclusive, (year, month))."""
    lo, hi = first[0] * 12 + first[1] - 1, last[0] * 12 + last[1] - 1
    index = rng.randint(lo, hi)
    return f"{index // 12:04d}-{index % 12 + 1:02d}-01"


def _year_start(rng: random.Random) -> str:
    """January 1st of a year in [1993, 1997]."""
    return f"{rng.randint(1993, 1997)}-01-01"


def _brand(rng: random.Random) -> str:
    return f"Brand#{rng.randint(1, 5)}{rng.randint(1, 5)}"


def _full_type(rng: random.Random) -> str:
    return f"{rng.choice(TYPE_SYLLABLE_1)} {rng.choice(TYPE_SYLLABLE_2)} {rng.choice(TYPE_SYLLABLE_3)}"


def _region_of(nation: str) -> str:
    return REGIONS[dict(NATIONS)[nation]]


def _q11_fraction(scale: float) -> str:
    """FRACTION = 0.0001 / SF, as a plain decimal literal."""
    with localcontext() as ctx:
        ctx.prec = 12
        value = Decimal("0.0001") / Decimal(repr(float(scale)))
    return format(value.normalize(), "f")


def _random_params(template: str, rng: random.Random, scale: float) -> list[str]:
    """Random parameters of one template, in placeholder order (:1, :2, ...), by §2.4.N.3."""
    n = int(template[1:])
    if n == 1:
        return [str(rng.randint(60, 120))]
    if n == 2:
        return [str(rng.randint(1, 50)), rng.choice(TYPE_SYLLABLE_3), rng.choice(REGIONS)]
    if n == 3:
        return [rng.choice(SEGMENTS), f"1995-03-{rng.randint(1, 31):02d}"]
    if n == 4:
        return [_month_start(rng, (1993, 1), (1997, 10))]
    if n == 5:
        return [rng.choice(REGIONS), _year_start(rng)]
    if n == 6:
        return [_year_start(rng), f"0.0{rng.randint(2, 9)}", str(rng.randint(24, 25))]
    if n == 7:
        return list(rng.sample(NATION_NAMES, 2))
    if n == 8:
        nation = rng.choice(NATION_NAMES)
        return [nation, _region_of(nation), _full_type(rng)]
    if n == 9:
        return [rng.choice(COLORS)]
    if n == 10:
        return [_month_start(rng, (1993, 2), (1995, 1))]
    if n == 11:
        return [rng.choice(NATION_NAMES), _q11_fraction(scale)]
    if n == 12:
        return [*rng.sample(SHIP_MODES, 2), _year_start(rng)]
    if n == 13:
        return [rng.choice(Q13_WORD1), rng.choice(Q13_WORD2)]
    if n == 14:
        return [_month_start(rng, (1993, 1), (1997, 12))]
    if n == 15:
        return [_month_start(rng, (1993, 1), (1997, 10))]
    if n == 16:
        type_prefix = f"{rng.choice(TYPE_SYLLABLE_1)} {rng.choice(TYPE_SYLLABLE_2)}"
        return [_brand(rng), type_prefix, *(str(size) for size in rng.sample(range(1, 51), 8))]
    if n == 17:
        return [_brand(rng), f"{rng.choice(CONTAINER_SYLLABLE_1)} {rng.choice(CONTAINER_SYLLABLE_2)}"]
    if n == 18:
        return [str(rng.randint(312, 315))]
    if n == 19:
        brands = [_brand(rng) for _ in range(3)]
        return [*brands, str(rng.randint(1, 10)), str(rng.randint(10, 20)), str(rng.randint(20, 30))]
    if n == 20:
        return [rng.choice(COLORS), _year_start(rng), rng.choice(NATION_NAMES)]
    if n == 21:
        return [rng.choice(NATION_NAMES)]
    if n == 22:
        return list(rng.sample(COUNTRY_CODES, 7))
    raise ValueError(f"no TPC-H query template {template!r}")


_VALIDATION: dict[str, list[str]] = {
    "q01": ["90"],
    "q02": ["15", "BRASS", "EUROPE"],
    "q03": ["BUILDING", "1995-03-15"],
    "q04": ["1993-07-01"],
    "q05": ["ASIA", "1994-01-01"],
    "q06": ["1994-01-01", "0.06", "24"],
    "q07": ["FRANCE", "GERMANY"],
    "q08": ["BRAZIL", "AMERICA", "ECONOMY ANODIZED STEEL"],
    "q09": ["green"],
    "q10": ["1993-10-01"],
    "q11": ["GERMANY", "<fraction>"],  # 0.0001 at SF 1; scaled as 0.0001 / SF
    "q12": ["MAIL", "SHIP", "1994-01-01"],
    "q13": ["special", "requests"],
    "q14": ["1995-09-01"],
    "q15": ["1996-01-01"],
    "q16": ["Brand#45", "MEDIUM POLISHED", "49", "14", "23", "45", "19", "3", "36", "9"],
    "q17": ["Brand#23", "MED BOX"],
    "q18": ["300"],
    "q19": ["Brand#12", "Brand#23", "Brand#34", "1", "10", "20"],
    "q20": ["forest", "1994-01-01", "CANADA"],
    "q21": ["SAUDI ARABIA"],
    "q22": ["13", "31", "23", "29", "30", "18", "17"],
}


def validation_params(template: str, scale: float = 1.0) -> list[str]:
    """The specification's validation parameters of a template, in placeholder order.

    Q11's FRACTION is 0.0001 / SF (0.0001 at SF 1, the validation database).
    """
    values = list(_VALIDATION[template])
    if template == "q11":
        values[1] = _q11_fraction(scale)
    return values


def random_params(template: str, seed: int, instance: int, scale: float = 1.0) -> list[str]:
    """Random parameters of instance `instance` (>= 2) of a template, reproducible from `seed`."""
    rng = random.Random(f"tpch:{seed}:{template}:{instance}")
    return _random_params(template, rng, scale)


# -- templates and substitution ------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"(?<![\w:]):(\d+)(?!\d)")
_TITLE = re.compile(r"^--\s*Q\d+:\s*(.+)$")


@dataclass(frozen=True)
class Template:
    """One query template: `name` ("q17"), `title` (from its first line), `sql` (comments stripped)."""

    name: str
    title: str
    sql: str

    @property
    def placeholders(self) -> list[str]:
        """The distinct placeholders of the template, numerically ordered (":1", ":2", ...)."""
        numbers = sorted({int(m.group(1)) for m in _PLACEHOLDER.finditer(self.sql)})
        return [f":{n}" for n in numbers]


def templates(directory: Path = TEMPLATES_DIR) -> list[Template]:
    """The query templates of `directory` (q01.sql ... q22.sql), in name order.

    Leading comment lines are the header (title, parameter notes) and are dropped, as is a
    trailing semicolon.
    """
    found = []
    for path in sorted(directory.glob("q*.sql")):
        lines = path.read_text().splitlines()
        title = _TITLE.match(lines[0].strip()) if lines else None
        while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
            lines.pop(0)
        sql = "\n".join(lines).strip().rstrip(";").rstrip()
        found.append(Template(path.stem, title.group(1).strip() if title else path.stem, sql))
    if not found:
        raise DatasetError(f"no TPC-H query templates in {directory}")
    return found


def substitute(sql: str, params: dict[str, str]) -> str:
    """Replace each `:N` token of `sql` with `params[":N"]` (plain text, see the module docstring)."""
    for key, value in params.items():
        if "'" in value or "\\" in value:
            raise ValueError(f"parameter {key} = {value!r} holds a quote or backslash")

    def replace(match: re.Match[str]) -> str:
        key = f":{match.group(1)}"
        if key not in params:
            raise ValueError(f"no value for placeholder {key}")
        return params[key]

    return _PLACEHOLDER.sub(replace, sql)


def queries(instances: int = 1, seed: int = 1, scale: float = 1.0,
            directory: Path = TEMPLATES_DIR) -> list[BenchQuery]:
    """The TPC-H workload: `instances` instances of each of the 22 templates.

    Ordered by instance, then template: q01 ... q22 (the validation parameters), then q01_2 ...
    q22_2, and so on. `scale` only enters Q11's FRACTION (0.0001 / SF). Deterministic for a given
    (seed, scale); instance k of a template does not depend on `instances`.
    """
    if instances < 1:
        raise ValueError("instances must be at least 1")
    loaded = templates(directory)
    workload = []
    for instance in range(1, instances + 1):
        for template in loaded:
            if instance == 1:
                values = validation_params(template.name, scale)
                query_id = template.name
            else:
                values = random_params(template.name, seed, instance, scale)
                query_id = f"{template.name}_{instance}"
            params = {f":{i}": value for i, value in enumerate(values, start=1)}
            if template.placeholders != list(params):
                raise DatasetError(f"{template.name}: template placeholders {template.placeholders} "
                                   f"do not match its parameters {list(params)}")
            workload.append(BenchQuery(query_id, substitute(template.sql, params), template.name, params))
    return workload


# -- data ----------------------------------------------------------------------------------------

DATA = CsvDataSet("TPC-H", "tpchgen-cli", TABLES, SCHEMA_DIR, COMPLETION_MARKER)


def dataset_dir(root: Path, scale: float) -> Path:
    """The conventional directory for the CSV files of one scale factor under `root` (root/sf0.01)."""
    return root / f"sf{scale_text(scale, 'the TPC-H')}"


def generate(scale: float, directory: Path, progress: Progress | None = None) -> Path:
    """Write the TPC-H tables at scale factor `scale` as `<table>.csv` (with a header row) into `directory`.

    Runs `tpchgen-cli csv -s SCALE --output-dir DIRECTORY`. A directory that already holds all
    eight files of this scale factor and the completion marker written after a successful run
    is left as it is. Returns `directory`; raises DatasetError when the tool is missing or fails.
    """
    scale_arg = scale_text(scale, "the TPC-H")
    return DATA.generate(["csv", "-s", scale_arg, "--output-dir", str(directory), "--overwrite", "--quiet"],
                         Path(directory), scale_arg, progress)


def create_fk_indexes(conn: psycopg.Connection) -> None:
    """Add the usual foreign-key indexes (sql/tpch/fk_indexes.sql); idempotent."""
    conn.execute((SCHEMA_DIR / "fk_indexes.sql").read_text())


def load(dsn: str, csv_dir: Path, fk_indexes: bool = False, progress: Progress | None = None) -> dict[str, int]:
    """Load the CSV files of `csv_dir` into the database at `dsn`; returns the rows per table.

    Primary keys only (sql/tpch/keys.sql), as in the papers; `fk_indexes` adds sql/tpch/fk_indexes.sql.
    """
    indexes = [(SCHEMA_DIR / "fk_indexes.sql").read_text()] if fk_indexes else []
    return DATA.load(dsn, csv_dir, indexes, progress)


def load_counts(dsn: str) -> dict[str, int]:
    """Rows per TPC-H table in the database at `dsn` (exact counts)."""
    return DATA.counts(dsn)
