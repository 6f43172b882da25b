"""An application's traffic on the demo database, for the advisor to find (README: "The advisor").

Usage: .venv/bin/python sql/demo/workload.py [--dsn "host=... dbname=laser_demo user=shop"] [--repeat 2]

Runs as the demo's application role `shop`: a daily sales report sent with literal values (simple
protocol), an events lookup sent with server-side parameters (`$1`, as drivers do), and a
statement with nothing to rewrite. All three land in pg_stat_statements with their constants
normalized to `$n`; the server log (log_min_duration_statement) keeps the values that
`laser.capture()` samples as parameter sets.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from laser.demo import DEMO_DB, DEMO_ROLE
from laser.localdb import LocalCluster

DAYS = ("2024-02-29", "2024-05-14", "2024-09-03")
DAILY_REPORT = ("SELECT status, count(*) AS orders, sum(amount) AS revenue FROM orders"
                " WHERE created_at::date = '{day}' GROUP BY status ORDER BY status")
EVENTS_OF_DAY = "SELECT id, user_id, event_type FROM events WHERE created_at::date = %s ORDER BY id"
BIG_ORDERS = "SELECT count(*) FROM orders WHERE amount > %s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="the demo database as the application role (default: the local cluster's)")
    parser.add_argument("--repeat", type=int, default=2, help="times each statement runs per value")
    args = parser.parse_args(argv)
    dsn = args.dsn or LocalCluster.default().dsn(DEMO_DB, DEMO_ROLE)
    started = time.monotonic()
    count = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(args.repeat):
            for day in DAYS:
                conn.execute(DAILY_REPORT.format(day=day), prepare=False).fetchall()
                conn.execute(EVENTS_OF_DAY, (day,)).fetchall()
                count += 2
            conn.execute(BIG_ORDERS, (990,)).fetchall()
            count += 1
    print(f"{count} statements in {time.monotonic() - started:.1f} s as {DEMO_ROLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
