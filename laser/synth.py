"""`laser synth`: a random foreign-key schema with skewed data (model/corpus/synth.py), loaded into a
new database of the local cluster, for corpora on schemas nobody wrote rules for."""
from __future__ import annotations

import argparse
import sys
import time

from psycopg import sql

from laser import demo
from laser.localdb import LocalCluster, bring_up
from model.corpus import synth


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, required=True,
                        help="which schema (the same seed, the same schema and rows)")
    parser.add_argument("--scale", type=float, default=1.0, help="row counts times this (default 1: fact tables "
                                                                 "of 100k-400k rows)")
    parser.add_argument("--reload", action="store_true", help="drop and load the database again if it exists")


def database_name(seed: int) -> str:
    """>>> database_name(3)
    'laser_synth_3'
    """
    return f"laser_synth_{seed}"


def main(args: argparse.Namespace) -> int:
    try:
        tables = synth.design(args.seed, args.scale)
    except ValueError as exc:
        print(f"laser synth: {exc}", file=sys.stderr)
        return 2
    cluster = LocalCluster.default()
    bring_up(cluster)
    demo.ensure_demo_role(cluster)
    name = database_name(args.seed)
    exists = cluster.execute(sql.SQL("SELECT 1 FROM pg_catalog.pg_database WHERE datname = {}").format(
        sql.Literal(name)))
    if exists and not args.reload:
        print(f"{name} exists (--reload to load it again)")
    else:
        if exists:
            cluster.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        cluster.ensure_database(name)
        rows = sum(t.rows for t in tables)
        print(f"loading {name}: {len(tables)} tables, {rows:,} rows ...", flush=True)
        started = time.monotonic()
        cluster.psql("-f", "-", dbname=name, stdin=synth.script(tables, args.seed))
        cluster.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
            sql.Identifier(demo.DEMO_ROLE)), dbname=name)
        print(f"loaded in {time.monotonic() - started:.0f} s")
    for table in tables:
        keys = ", ".join(f"{column} -> {parent}" for column, parent in table.references)
        print(f"  {table.name} ({table.rows:,} rows){': ' + keys if keys else ''}")
    print(f"dsn: {cluster.dsn(name, demo.DEMO_ROLE)}")
    return 0
