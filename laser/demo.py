"""The demo: an e-commerce database with slow queries, rewritten through laser_rewrite in the database."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from laser.localdb import LocalCluster, project_root

DEMO_DB = "laser_demo"
DEMO_ROLE = "shop"
DEMO_DIR = project_root() / "sql" / "demo"
_TITLE = re.compile(r"^--\s*title:\s*(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class DemoQuery:
    name: str
    title: str
    sql: str


def demo_queries(directory: Path = DEMO_DIR / "queries") -> list[DemoQuery]:
    """The workload: one query per file, header comments stripped."""
    queries = []
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        title = _TITLE.search(text)
        body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()
        queries.append(DemoQuery(path.stem, title.group(1).strip() if title else path.stem, body.rstrip(";").strip()))
    return queries


def ensure_demo_role(cluster: LocalCluster) -> None:
    """The plain login role `shop` the demo and the verifier fixtures run as."""
    cluster.psql("-c", f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{DEMO_ROLE}') THEN
    CREATE ROLE {DEMO_ROLE} LOGIN;
  END IF;
END $$;
""")


def ensure_demo_database(cluster: LocalCluster, reload: bool = False) -> None:
    """Role `shop`, database `laser_demo` owned by it, the data, and the extensions."""
    ensure_demo_role(cluster)
    exists = cluster.psql("-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DEMO_DB}'").stdout.strip()
    if not exists:
        cluster.psql("-c", f"CREATE DATABASE {DEMO_DB} OWNER {DEMO_ROLE}")
    loaded = cluster.psql("-tAc", "SELECT to_regclass('public.events') IS NOT NULL", dbname=DEMO_DB).stdout.strip()
    if loaded != "t" or reload:
        print("loading the demo database (users 10k, products 1k, orders 500k, events 1M) ...", flush=True)
        cluster.psql("-f", "-", dbname=DEMO_DB, user=DEMO_ROLE, stdin=(DEMO_DIR / "schema.sql").read_text())
    cluster.psql("-c", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"
                       " CREATE EXTENSION IF NOT EXISTS plpython3u;"
                       " CREATE EXTENSION IF NOT EXISTS laser;"
                       " ALTER EXTENSION laser UPDATE;", dbname=DEMO_DB)


def rewrite_in_database(dsn: str, query: str) -> tuple[str, dict[str, Any], list[str]]:
    """Call laser_rewrite and laser_rewrite_evidence as the connecting user; return (sql, evidence, notices)."""
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        rewritten = conn.execute("SELECT laser_rewrite(%s)", (query,)).fetchone()
        evidence = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()
    assert rewritten is not None and evidence is not None
    return rewritten[0], evidence[0], notices


def run_demo(cluster: LocalCluster, progress: bool = True) -> list[dict[str, Any]]:
    """Rewrite every demo query through the extension; one row per query."""
    rows = []
    dsn = cluster.dsn(DEMO_DB, DEMO_ROLE)
    queries = demo_queries()
    for i, query in enumerate(queries, start=1):
        if progress:
            print(f"[{i}/{len(queries)}] {query.name}: {query.title} ...", flush=True)
        rewritten, evidence, notices = rewrite_in_database(dsn, query.sql)
        rows.append({
            "name": query.name,
            "title": query.title,
            "original_sql": query.sql,
            "rewritten_sql": rewritten,
            "original_ms": evidence["original_ms"],
            "rewrite_ms": evidence["rewrite_ms"],
            "speedup": evidence["speedup"],
            "verified": bool(evidence["verified"]),
            "source": evidence["source"],
            "message": evidence["message"],
            "notices": notices,
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The demo's result table, then each rewrite."""
    header = f"{'query':<34} {'original ms':>12} {'rewrite ms':>11} {'speedup':>8} {'verified':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['name']:<34} {row['original_ms']:>12.1f} {row['rewrite_ms']:>11.1f} "
                     f"{row['speedup']:>7.1f}x {('yes' if row['verified'] else 'no'):>9}")
    for row in rows:
        lines.append("")
        lines.append(f"== {row['name']}: {row['title']}")
        lines.append(f"   {row['message']}")
        lines.append(row["rewritten_sql"] if row["verified"] else "(no verified rewrite; original kept)")
    return "\n".join(lines)


def as_json(rows: list[dict[str, Any]]) -> str:
    keys = ("name", "original_sql", "rewritten_sql", "original_ms", "rewrite_ms", "speedup", "verified",
            "title", "source", "message")
    return json.dumps([{k: row[k] for k in keys} for row in rows], indent=2)
