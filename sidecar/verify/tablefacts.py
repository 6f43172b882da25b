"""The declared shape of the tables a query reads: columns, NOT NULL, keys, foreign keys.

Perturbed instances must respect exactly these declarations: an instance the schema forbids proves
nothing, and a rewrite that relies on a declared constraint is equivalent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sidecar.verify.relations import ColumnMention, TableName

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})
NUMERIC_TYPES = frozenset({"numeric", "float4", "float8"})
TEXT_TYPES = frozenset({"text", "varchar", "bpchar"})
COPYABLE_KINDS = frozenset({"r", "p"})
"""Ordinary and partitioned tables; views, foreign tables and the like are read as they are."""


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    type_sql: str
    """format_type(): what a literal is cast to."""
    type_name: str
    not_null: bool
    generated: bool

    @property
    def is_integer(self) -> bool:
        return self.type_name in INTEGER_TYPES

    @property
    def is_number(self) -> bool:
        return self.type_name in INTEGER_TYPES or self.type_name in NUMERIC_TYPES

    @property
    def is_text(self) -> bool:
        return self.type_name in TEXT_TYPES


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    parent: int
    """oid of the referenced table."""
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableFacts:
    oid: int
    schema: str
    name: str
    kind: str
    estimated_rows: float
    columns: tuple[ColumnFacts, ...]
    keys: tuple[tuple[str, ...], ...]
    """Column lists of the primary key and of unique indexes on plain columns."""
    foreign_keys: tuple[ForeignKey, ...]

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def copyable(self) -> bool:
        return self.kind in COPYABLE_KINDS

    def column(self, name: str) -> ColumnFacts | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def writable_columns(self) -> tuple[str, ...]:
        """Columns an INSERT names (generated ones compute themselves)."""
        return tuple(c.name for c in self.columns if not c.generated)

    @property
    def fixed_columns(self) -> frozenset[str]:
        """Key and foreign-key columns: perturbations never change their values in place."""
        fixed = {c for key in self.keys for c in key}
        fixed.update(c for fk in self.foreign_keys for c in fk.columns)
        return frozenset(fixed)


def resolve(cur: psycopg.Cursor[Any], names: list[TableName]) -> dict[TableName, int | None]:
    """The oid each written name means under the current search_path (None: not a relation)."""
    out: dict[TableName, int | None] = {}
    for schema, name in names:
        written = sql.Identifier(name) if schema is None else sql.Identifier(schema, name)
        cur.execute(sql.SQL("SELECT to_regclass(%s)::oid"), (written.as_string(cur),))
        row = cur.fetchone()
        out[(schema, name)] = int(row[0]) if row and row[0] is not None else None
    return out


def load(cur: psycopg.Cursor[Any], oid: int) -> TableFacts:
    """Read one relation's declarations from the catalog (readable by every role)."""
    cur.execute(
        "SELECT n.nspname, c.relname, c.relkind, c.reltuples FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s",
        (oid,),
    )
    row = cur.fetchone()
    if row is None:
        raise LookupError(f"relation oid {oid} disappeared")
    schema, name, kind, reltuples = row
    cur.execute(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname,"
        " a.attnotnull, a.attgenerated <> '' FROM pg_catalog.pg_attribute a"
        " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (oid,),
    )
    columns = tuple(ColumnFacts(*r) for r in cur.fetchall())
    cur.execute(
        "SELECT i.indisprimary, ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, pos)"
        "   JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.pos)"
        " FROM pg_catalog.pg_index i WHERE i.indrelid = %s AND i.indisunique"
        " AND i.indexprs IS NULL AND i.indpred IS NULL ORDER BY NOT i.indisprimary, i.indexrelid",
        (oid,),
    )
    index_rows = cur.fetchall()
    keys = tuple(tuple(r[1]) for r in index_rows)
    cur.execute(
        "SELECT c.confrelid::oid,"
        " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, pos)"
        "   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.pos),"
        " ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, pos)"
        "   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.pos)"
        " FROM pg_catalog.pg_constraint c WHERE c.conrelid = %s AND c.contype = 'f' ORDER BY c.oid",
        (oid,),
    )
    fks = tuple(ForeignKey(tuple(r[1]), int(r[0]), tuple(r[2])) for r in cur.fetchall())
    return TableFacts(oid, schema, name, kind, float(reltuples), columns, keys, fks)


def locate(mention: ColumnMention, aliases: dict[str, int | None], tables: list[TableFacts]) -> tuple[int, str] | None:
    """(table oid, column) a written column means: by its qualifier, or the one table that has it."""
    if mention.qualifier is not None:
        oid = aliases.get(mention.qualifier)
        owners = [t for t in tables if t.oid == oid]
    else:
        owners = [t for t in tables if t.column(mention.column) is not None]
    if len(owners) == 1 and owners[0].column(mention.column) is not None:
        return owners[0].oid, mention.column
    return None
