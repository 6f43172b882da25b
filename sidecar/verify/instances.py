"""Perturbed instances: small private copies of the tables a query reads, shaped to expose rewrites
that agree on today's data only.

Each referenced table gets two temporary copies (`LIKE … INCLUDING CONSTRAINTS, INDEXES`): a
sample of live rows that keeps join partners together, and the instance the queries run on. Each
instance starts from the sample and perturbs it — NULLs in nullable columns, duplicated rows,
empty tables, rows without partners, odd and zero numbers, values on the query's own literal
boundaries — and is then repaired to satisfy every declared constraint: NOT NULL, CHECK, keys and
unique indexes are enforced by the copies themselves, foreign keys by deleting orphaned rows.
Key and foreign-key columns are never changed in place, so rows that reference tables outside the
instance still find their partners.

All of this runs inside `ReadOnlySession.scratch()` after it is sealed: only the temporary copies
can be written.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sidecar.verify.session import Scratch
from sidecar.verify.tablefacts import ColumnFacts, TableFacts


@dataclass(frozen=True)
class InstanceConfig:
    """How many and how large the perturbed instances are."""

    sample_rows: int = 30
    """Live rows sampled per table before partners are added."""
    max_instances: int = 16
    """Instances tried per candidate, in the order of `InstanceBuilder.instances`."""
    per_table_instances: int = 4
    """Tables that get their own "empty" and "thinned" instance."""
    seed: int = 7
    """Makes sampling and perturbation repeatable."""
    query_timeout_ms: int = 3_000
    """Cap on one query over one instance (instances are tiny; a slow one proves nothing)."""
    sampling_timeout_ms: int = 5_000
    """Cap on one sampling statement over a live table; a step that hits it is skipped."""
    partner_rounds: int = 1
    """Rounds of adding rows that meet partners sampled later; more reach partners of partners
    (a part's partsupp rows, then their lineitems), at the cost of more sampling statements."""

    def __post_init__(self) -> None:
        if not 1 <= self.sample_rows <= 10_000:
            raise ValueError("sample_rows must be between 1 and 10000")
        if self.max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        if self.query_timeout_ms <= 0:
            raise ValueError("query_timeout_ms must be positive")


@dataclass(frozen=True)
class Link:
    """Rows of `left` and `right` meet where left.left_column = right.right_column."""

    left: int
    left_column: str
    right: int
    right_column: str


@dataclass(frozen=True)
class Boundary:
    """A literal the query compares a column with (SQL text, cast to the column's type)."""

    table: int
    column: str
    literal: str


@dataclass(frozen=True)
class Focus:
    """Rows the query's own filters select on one table: `predicate` over the table named `alias`."""

    table: int
    alias: str
    predicate: str


@dataclass(frozen=True)
class Instance:
    name: str
    description: str


class InstanceBuilder:
    """Builds the sample once, then fills the instance tables with one perturbation after another."""

    def __init__(self, scratch: Scratch, tables: list[TableFacts], links: list[Link],
                 boundaries: list[Boundary], config: InstanceConfig = InstanceConfig(),
                 focus: list[Focus] | None = None) -> None:
        self.scratch = scratch
        self.focus = focus or []
        self.tables = tables
        self.by_oid = {t.oid: t for t in tables}
        self.links = links
        self.boundaries = boundaries
        self.config = config

    # -- names -----------------------------------------------------------------------------------

    @staticmethod
    def instance_table(table: TableFacts) -> str:
        """Name of the temporary table a redirected query reads instead of `table`."""
        return f"laser_i{table.oid}"

    @staticmethod
    def _sample_table(table: TableFacts) -> str:
        return f"laser_s{table.oid}"

    def _inst(self, table: TableFacts) -> sql.Identifier:
        return sql.Identifier("pg_temp", self.instance_table(table))

    def _smp(self, table: TableFacts) -> sql.Identifier:
        return sql.Identifier("pg_temp", self._sample_table(table))

    # -- set-up ------------------------------------------------------------------------------------

    def create(self) -> None:
        """Create the temporary copies, then seal the transaction read-only."""
        for table in self.tables:
            self.scratch.create_copy(table.identifier, self._sample_table(table))
            self.scratch.create_copy(table.identifier, self.instance_table(table))
        self.scratch.seal()
        # Sampling takes the first matching rows of a scan (LIMIT). With synchronized scans, a scan
        # of a table larger than a quarter of shared_buffers starts where the previous one stopped,
        # so the same seed would sample different rows from run to run (TPC-H SF 1's lineitem).
        self.scratch.execute("SET LOCAL synchronize_seqscans = off")

    def sample(self) -> None:
        """Fill the sample tables with live rows that keep join partners together.

        Tables are visited from the one with most foreign keys into the instance (the "many" side)
        outwards along the links; a visited table takes the rows that meet rows already sampled,
        plus rows its filters in the query select, plus rows on the query's literals, plus a few
        random rows that meet nothing.
        """
        n = self.config.sample_rows
        done: list[TableFacts] = []
        for table in self._visit_order():
            cols = _columns(table.writable_columns)
            for focus in (f for f in self.focus if f.table == table.oid):
                self._try(sql.SQL(
                    "INSERT INTO {dst} ({cols}) SELECT {values} FROM {src} AS {alias} WHERE {pred}"
                    " LIMIT {k} ON CONFLICT DO NOTHING"
                ).format(dst=self._smp(table), cols=cols, values=sql.SQL(", ").join(
                    sql.Identifier(focus.alias, c) for c in table.writable_columns),
                    src=table.identifier, alias=sql.Identifier(focus.alias),
                    pred=sql.SQL(focus.predicate), k=sql.Literal(max(2, n // 2))), sampling=True)
            partners = [link for link in self._links_of(table) if link[2] in {d.oid for d in done}]
            for column, _, partner_oid, partner_column in partners:
                partner = self.by_oid[partner_oid]
                self._try(sql.SQL(
                    "INSERT INTO {dst} ({cols}) SELECT {cols} FROM {src} WHERE {col} IN"
                    " (SELECT {pcol} FROM {psmp}) LIMIT {k} ON CONFLICT DO NOTHING"
                ).format(dst=self._smp(table), cols=cols, src=table.identifier, col=sql.Identifier(column),
                         pcol=sql.Identifier(partner_column), psmp=self._smp(partner), k=sql.Literal(3 * n)),
                             sampling=True)
            for bound in self.boundaries:
                if bound.table == table.oid and table.column(bound.column) is not None:
                    facts = table.column(bound.column)
                    assert facts is not None
                    for op in ("=", "<", ">"):
                        self._try(sql.SQL(
                            "INSERT INTO {dst} ({cols}) SELECT {cols} FROM {src} WHERE {col} {op} ({lit})::{typ}"
                            " LIMIT {k} ON CONFLICT DO NOTHING"
                        ).format(dst=self._smp(table), cols=cols, src=table.identifier,
                                 col=sql.Identifier(bound.column), op=sql.SQL(op), lit=sql.SQL(bound.literal),
                                 typ=sql.SQL(facts.type_sql), k=sql.Literal(max(2, n // 6))), sampling=True)
            extra = n if not partners else max(2, n // 4)
            self._try(sql.SQL(
                "INSERT INTO {dst} ({cols}) SELECT {cols} FROM {src} TABLESAMPLE {method} ({pct})"
                " REPEATABLE ({seed}) LIMIT {k} ON CONFLICT DO NOTHING"
            ).format(dst=self._smp(table), cols=cols, src=table.identifier,
                     method=sql.SQL("SYSTEM" if table.estimated_rows > 200_000 else "BERNOULLI"),
                     pct=sql.Literal(_sample_percent(table.estimated_rows, 4 * extra)),
                     seed=sql.Literal(self.config.seed), k=sql.Literal(extra)), sampling=True)
            done.append(table)
        self._pull_later_partners(done)
        self._pull_parents()
        self._repair(self._smp)

    def _pull_later_partners(self, order: list[TableFacts]) -> None:
        """Add rows that meet partners sampled after their table was visited.

        The first pass samples the many side before the filtered side, so the rows a filter selects
        (Brand#23 parts) would otherwise meet none of their partners (their lineitems), and a
        query correlated on that link would see only empty groups. A table linked to one partner
        by several columns (l_partkey, l_suppkey to partsupp) is matched on all of them together,
        then on each. Only partner keys the sample does not hold yet are pulled, so no sampled row
        is doubled. Later rounds (`partner_rounds`) follow every link again, reaching partners of
        partners.
        """
        n = self.config.sample_rows
        position = {t.oid: i for i, t in enumerate(order)}
        for round_ in range(self.config.partner_rounds):
            added = 0
            for table in order:
                groups: dict[int, list[tuple[str, str]]] = {}
                for column, _, partner_oid, partner_column in self._links_of(table):
                    if round_ == 0 and position.get(partner_oid, -1) <= position[table.oid]:
                        continue
                    pairs = groups.setdefault(partner_oid, [])
                    if (column, partner_column) not in pairs:
                        pairs.append((column, partner_column))
                focus = [f for f in self.focus if f.table == table.oid]
                for partner_oid, pairs in groups.items():
                    ways = ([pairs] if len(pairs) > 1 else []) + [[pair] for pair in pairs]
                    for way in ways:
                        # First the rows that also pass this table's own filters in the query (the
                        # 1994 lineitems of a sampled part-supplier pair), then any: a chain of
                        # filtered tables only yields a non-empty result when its rows meet.
                        for chosen in [*focus, None]:
                            added += self._pull_partners(table, partner_oid, way, 3 * n, chosen)
            if not added:
                return

    def _pull_partners(self, table: TableFacts, partner_oid: int, way: list[tuple[str, str]], k: int,
                       focus: Focus | None) -> int:
        """Insert up to k live rows of `table` whose `way` columns meet the partner's sample
        (restricted to `focus`'s predicate when given); returns the rows added.

        Unfocused, only partner keys the sample does not hold yet are pulled, so no sampled row is
        doubled. Focused, on a table with a key, every partner key is eligible (the key keeps rows
        single): a partner that already met one row still gets the rows the query's filter selects.
        """
        alias = sql.Identifier(focus.alias if focus else "laser_t")
        mine = sql.SQL(", ").join(sql.SQL("{}.{}").format(alias, sql.Identifier(c)) for c, _ in way)
        held = sql.SQL("" if focus and table.keys else " EXCEPT SELECT {plain} FROM {dst}").format(
            plain=_columns([c for c, _ in way]), dst=self._smp(table))
        rows = self._try(sql.SQL(
            "INSERT INTO {dst} ({cols}) SELECT {values} FROM {src} AS {alias} WHERE ({mine}) IN"
            " (SELECT {theirs} FROM {psmp}{held}){pred} LIMIT {k}"
            " ON CONFLICT DO NOTHING RETURNING 1"
        ).format(dst=self._smp(table), cols=_columns(table.writable_columns), held=held,
                 values=sql.SQL(", ").join(sql.SQL("{}.{}").format(alias, sql.Identifier(c))
                                           for c in table.writable_columns),
                 src=table.identifier, alias=alias, mine=mine, theirs=_columns([p for _, p in way]),
                 psmp=self._smp(self.by_oid[partner_oid]),
                 pred=sql.SQL(" AND ({})").format(sql.SQL(focus.predicate)) if focus else sql.SQL(""),
                 k=sql.Literal(k)), sampling=True)
        return len(rows or ())

    def _visit_order(self) -> list[TableFacts]:
        def inward(t: TableFacts) -> int:
            return sum(1 for fk in t.foreign_keys if fk.parent in self.by_oid and fk.parent != t.oid)

        remaining = sorted(self.tables, key=lambda t: (-inward(t), -t.estimated_rows, t.oid))
        order: list[TableFacts] = []
        while remaining:
            seen = {t.oid for t in order}
            nxt = next((t for t in remaining if any(link[2] in seen for link in self._links_of(t))), remaining[0])
            order.append(nxt)
            remaining.remove(nxt)
        return order

    def _links_of(self, table: TableFacts) -> list[tuple[str, int, int, str]]:
        """(column of `table`, table oid, partner oid, partner column) for links and foreign keys."""
        out: list[tuple[str, int, int, str]] = []
        for link in self.links:
            if link.left == table.oid and link.right != table.oid:
                out.append((link.left_column, table.oid, link.right, link.right_column))
            if link.right == table.oid and link.left != table.oid:
                out.append((link.right_column, table.oid, link.left, link.left_column))
        for fk in table.foreign_keys:
            if fk.parent in self.by_oid and fk.parent != table.oid and len(fk.columns) == 1:
                out.append((fk.columns[0], table.oid, fk.parent, fk.parent_columns[0]))
        for other in self.tables:
            for fk in other.foreign_keys:
                if fk.parent == table.oid and other.oid != table.oid and len(fk.columns) == 1:
                    out.append((fk.parent_columns[0], table.oid, other.oid, fk.columns[0]))
        return out

    def _pull_parents(self) -> None:
        """Add the live parent rows that sampled children reference (foreign keys inside the instance)."""
        for _ in range(len(self.tables) + 1):
            added = 0
            for child in self.tables:
                for fk in child.foreign_keys:
                    parent = self.by_oid.get(fk.parent)
                    if parent is None:
                        continue
                    rows = self._try(sql.SQL(
                        "INSERT INTO {dst} ({cols}) SELECT {cols} FROM {src} WHERE ({pk}) IN"
                        " (SELECT {fk} FROM {child}) ON CONFLICT DO NOTHING RETURNING 1"
                    ).format(dst=self._smp(parent), cols=_columns(parent.writable_columns), src=parent.identifier,
                             pk=_columns(fk.parent_columns), fk=_columns(fk.columns), child=self._smp(child)),
                                     sampling=True)
                    added += len(rows or ())
            if not added:
                return

    def _repair(self, name: Callable[[TableFacts], sql.Identifier]) -> None:
        """Delete rows whose foreign key finds no partner inside the instance, until none is left."""
        for _ in range(2 * len(self.tables) + 2):
            deleted = 0
            for child in self.tables:
                for fk in child.foreign_keys:
                    parent = self.by_oid.get(fk.parent)
                    if parent is None:
                        continue  # the values came from live rows: their partners exist
                    not_null = sql.SQL(" AND ").join(
                        sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in fk.columns)
                    match = sql.SQL(" AND ").join(
                        sql.SQL("p.{} = c.{}").format(sql.Identifier(pc), sql.Identifier(cc))
                        for pc, cc in zip(fk.parent_columns, fk.columns, strict=True))
                    rows = self.scratch.execute(sql.SQL(
                        "DELETE FROM {child} c WHERE {not_null} AND NOT EXISTS"
                        " (SELECT 1 FROM {parent} p WHERE {match}) RETURNING 1"
                    ).format(child=name(child), not_null=not_null, parent=name(parent), match=match))
                    deleted += len(rows)
            if not deleted:
                return

    # -- instances ---------------------------------------------------------------------------------

    def instances(self) -> Iterator[Instance]:
        """Fill the instance tables with each perturbation in turn; yield after each fill.

        Perturbations that a constraint refuses are skipped column by column, so every instance
        yielded satisfies the declared constraints.
        """
        count = 0
        for name, description, perturb in self._recipes():
            if count >= self.config.max_instances:
                return
            self._reset()
            try:
                with self.scratch.savepoint():
                    perturb()
                    self._repair(self._inst)
            except psycopg.Error:
                if self.scratch.broken:
                    raise
                continue
            count += 1
            yield Instance(name, description)

    def _recipes(self) -> list[tuple[str, str, Callable[[], None]]]:
        few = self.tables[: self.config.per_table_instances]
        recipes: list[tuple[str, str, Callable[[], None]]] = [
            ("sample", "live rows sampled with their join partners", lambda: None),
            ("nulls", "NULL in a third of the rows of every nullable column", self._nulls),
            ("duplicates", "every row twice (new key values where a key forbids exact copies)", self._duplicates),
            ("duplicates_and_nulls", "duplicated rows, then NULLs", self._duplicates_and_nulls),
            ("empty", "every table empty", self._empty_all),
        ]
        if self.boundaries:
            recipes.append(("boundaries", "values equal to the query's literals", self._boundary_values))
        recipes.append(("odd_and_zero", "integers made odd, and zeros, in non-key numeric columns",
                        self._odd_and_zero))
        for table in few if len(self.tables) > 1 else ():
            recipes.append((f"empty:{table.label}", f"{table.label} empty, the rest sampled",
                            functools.partial(self._empty, table)))
        for table in few:
            recipes.append((f"thinned:{table.label}", f"every other row of {table.label} removed",
                            functools.partial(self._thin, table)))
        return recipes

    def _duplicates_and_nulls(self) -> None:
        self._duplicates()
        self._nulls()

    def _empty_all(self) -> None:
        for table in self.tables:
            self._empty(table)

    def _reset(self) -> None:
        for table in self.tables:
            cols = _columns(table.writable_columns)
            self.scratch.execute(sql.SQL("DELETE FROM {}").format(self._inst(table)))
            self.scratch.execute(sql.SQL("INSERT INTO {dst} ({cols}) SELECT {cols} FROM {src}").format(
                dst=self._inst(table), cols=cols, src=self._smp(table)))

    def _nulls(self) -> None:
        for table in self.tables:
            for i, column in enumerate(c for c in table.columns if not c.not_null and not c.generated):
                self._try(sql.SQL("UPDATE {t} SET {c} = NULL WHERE {subset}").format(
                    t=self._inst(table), c=sql.Identifier(column.name), subset=_subset(3, i % 3, i)))

    def _duplicates(self) -> None:
        for table in self.tables:
            shifted = {}
            for key in table.keys:
                column = next((table.column(c) for c in key if c not in _fk_columns(table)
                               and _shiftable(table.column(c))), None)
                if column is None:
                    break
                shifted[column.name] = column
            values = [
                _shift(shifted[c], self._inst(table)) if c in shifted else sql.Identifier(c)
                for c in table.writable_columns
            ]
            self._try(sql.SQL("INSERT INTO {t} ({cols}) SELECT {values} FROM {t} ON CONFLICT DO NOTHING").format(
                t=self._inst(table), cols=_columns(table.writable_columns), values=sql.SQL(", ").join(values)))

    def _empty(self, table: TableFacts) -> None:
        self.scratch.execute(sql.SQL("DELETE FROM {}").format(self._inst(table)))

    def _thin(self, table: TableFacts) -> None:
        self.scratch.execute(sql.SQL("DELETE FROM {t} WHERE {subset}").format(
            t=self._inst(table), subset=_subset(2, 0, 1)))

    def _odd_and_zero(self) -> None:
        for table in self.tables:
            for i, column in enumerate(c for c in table.columns if c.is_number and not c.generated
                                       and c.name not in table.fixed_columns):
                col = sql.Identifier(column.name)
                if column.is_integer:
                    self._try(sql.SQL("UPDATE {t} SET {c} = {c} + 1 WHERE {subset}").format(
                        t=self._inst(table), c=col, subset=_subset(2, 0, i)))
                self._try(sql.SQL("UPDATE {t} SET {c} = 0 WHERE {subset}").format(
                    t=self._inst(table), c=col, subset=_subset(4, 1, i + 7)))

    def _boundary_values(self) -> None:
        for i, bound in enumerate(self.boundaries):
            table = self.by_oid.get(bound.table)
            column = table.column(bound.column) if table else None
            if table is None or column is None or column.generated:
                continue
            value = sql.SQL("({})::{}").format(sql.SQL(bound.literal), sql.SQL(column.type_sql))
            if column.name not in table.fixed_columns:
                self._try(sql.SQL("UPDATE {t} SET {c} = {v} WHERE {subset}").format(
                    t=self._inst(table), c=sql.Identifier(column.name), v=value, subset=_subset(3, 0, i)))
            elif column.name not in _fk_columns(table):
                # A key: add a copy of one row that carries the literal as its key.
                values = [value if c == column.name else sql.Identifier(c) for c in table.writable_columns]
                self._try(sql.SQL("INSERT INTO {t} ({cols}) SELECT {values} FROM {t} LIMIT 1 ON CONFLICT DO NOTHING")
                          .format(t=self._inst(table), cols=_columns(table.writable_columns),
                                  values=sql.SQL(", ").join(values)))

    # -- reading an instance back ------------------------------------------------------------------

    def contents(self, max_rows: int = 20) -> dict[str, Any]:
        """The current instance, table by table, for a counterexample."""
        out: dict[str, Any] = {}
        for table in self.tables:
            count = self.scratch.execute(sql.SQL("SELECT count(*) FROM {}").format(self._inst(table)))[0][0]
            rows = self.scratch.execute(sql.SQL("SELECT * FROM {} LIMIT {}").format(
                self._inst(table), sql.Literal(max_rows)))
            out[table.label] = {
                "columns": [c.name for c in table.columns],
                "row_count": int(count),
                "rows": [[jsonable(v) for v in row] for row in rows],
            }
        return out

    def row_counts(self) -> dict[str, int]:
        return {
            t.label: int(self.scratch.execute(sql.SQL("SELECT count(*) FROM {}").format(self._inst(t)))[0][0])
            for t in self.tables
        }

    def row_ids(self, table: TableFacts) -> list[str]:
        """Physical row ids of the current instance table (for shrinking a counterexample)."""
        return [str(r[0]) for r in self.scratch.execute(
            sql.SQL("SELECT ctid FROM {} ORDER BY ctid").format(self._inst(table)))]

    def delete_rows(self, table: TableFacts, row_ids: list[str]) -> None:
        """Delete rows by id, then repair foreign keys inside the instance."""
        self.scratch.execute(sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::tid[])").format(self._inst(table)),
                             (row_ids,))
        self._repair(self._inst)

    def _try(self, statement: sql.Composable, sampling: bool = False) -> list[tuple[Any, ...]] | None:
        """Run a sampling or perturbation step; a step some constraint, type or timeout refuses is skipped."""
        timeout = self.config.sampling_timeout_ms if sampling else self.config.query_timeout_ms
        try:
            with self.scratch.savepoint():
                return self.scratch.execute(statement, timeout_ms=timeout)
        except psycopg.Error:
            if self.scratch.broken:
                raise
            return None


def _shiftable(column: ColumnFacts | None) -> bool:
    return column is not None and not column.generated and (column.is_number or column.is_text)


def _fk_columns(table: TableFacts) -> set[str]:
    return {c for fk in table.foreign_keys for c in fk.columns}


def _columns(names: tuple[str, ...] | list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _subset(modulus: int, remainder: int, salt: int) -> sql.Composable:
    """A repeatable pseudo-random subset of rows: about 1/modulus of them."""
    return sql.SQL("abs(hashtext(ctid::text || {salt})) % {m} = {r}").format(
        salt=sql.Literal(str(salt)), m=sql.Literal(modulus), r=sql.Literal(remainder))


def _shift(column: ColumnFacts, table: sql.Identifier) -> sql.Composable:
    """A new value for a key column of a copied row, outside the range the instance uses."""
    col = sql.Identifier(column.name)
    if column.is_text:
        return sql.SQL("{} || '#2'").format(col)
    return sql.SQL("{c} + (SELECT max({c}) - min({c}) + 1 FROM {t})").format(c=col, t=table)


def _sample_percent(estimated_rows: float, wanted: int) -> float:
    """TABLESAMPLE percentage that yields about `wanted` rows.

    >>> _sample_percent(-1, 100), _sample_percent(1_000, 100), _sample_percent(1e9, 100)
    (100.0, 10.0, 1e-05)
    """
    if estimated_rows <= wanted:
        return 100.0
    return max(1e-5, min(100.0, 100.0 * wanted / estimated_rows))


def jsonable(value: Any) -> Any:
    """A value as plain JSON: numbers, strings, booleans, null; the rest as text.

    >>> import decimal, datetime
    >>> [jsonable(v) for v in (None, 3, 1.5, decimal.Decimal("2.50"), datetime.date(2024, 1, 2), "x")]
    [None, 3, 1.5, '2.50', '2024-01-02', 'x']
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
