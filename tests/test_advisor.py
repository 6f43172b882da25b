"""The advisor against a real cluster: pg_stat_statements capture, advisories, review, revalidation, faults.

A database of its own (`laser_advisor`): one table of timestamped orders with a B-tree index on
`created_at`. `created_at::date = <day>` cannot use the index; the rules backend rewrites it to a
range that can, which wins on every day. The workload runs as an ordinary role (`adv_app`), both
as literal statements (simple protocol) and with server-side parameters (psycopg binds `$1`), and
every statement of this database is logged, so capture samples real parameter values.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from laser.localdb import LocalCluster

DB = "laser_advisor"
APP = "adv_app"
REVIEWER = "adv_reviewer"
OUTSIDER = "adv_outsider"
LITERAL = "SELECT count(*), sum(amount) FROM adv_orders WHERE created_at::date = '{day}'"
PARAMETERIZED = "SELECT id, amount FROM adv_orders WHERE created_at::date = %s ORDER BY id"
HOPELESS = "SELECT count(*) FROM adv_orders WHERE amount > %s"  # nothing to rewrite
DAYS = ("2024-03-05", "2024-04-17", "2024-06-02")


def _connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, **kwargs)


@pytest.fixture(scope="module")
def adv(cluster: LocalCluster, sidecar: str) -> Iterator[dict[str, str]]:
    """The advisor database, its roles, and DSNs for the superuser, the app, a reviewer and an outsider."""
    for role in (APP, REVIEWER, OUTSIDER):
        cluster.psql("-c", f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
                           f"THEN CREATE ROLE {role} LOGIN; END IF; END $$")
    cluster.psql("-c", f"GRANT laser_reviewer TO {REVIEWER}")
    cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    cluster.psql("-c", f"CREATE DATABASE {DB} OWNER {APP}")
    cluster.psql("-c", "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION laser CASCADE;"
                       f" ALTER DATABASE {DB} SET log_min_duration_statement = 0", dbname=DB)
    cluster.psql("-c", """
CREATE TABLE adv_orders (id bigint PRIMARY KEY, created_at timestamp NOT NULL, amount numeric NOT NULL);
INSERT INTO adv_orders
SELECT g, timestamp '2024-01-01' + (g * 97 % 31536000) * interval '1 second', (g % 1000) / 10.0
  FROM generate_series(1, 400000) g;
CREATE INDEX adv_orders_created_at ON adv_orders (created_at);
ANALYZE adv_orders;
""", dbname=DB, user=APP)
    dsns = {"admin": cluster.dsn(DB), "app": cluster.dsn(DB, APP), "reviewer": cluster.dsn(DB, REVIEWER),
            "outsider": cluster.dsn(DB, OUTSIDER)}
    with _connect(dsns["admin"]) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    yield dsns
    if not os.environ.get("LASER_TEST_KEEP_CLUSTER"):
        cluster.psql("-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def run_workload(app_dsn: str, repeat: int = 2) -> None:
    """Slow statements as an application sends them: literals, and server-side parameters."""
    with _connect(app_dsn) as conn:
        for _ in range(repeat):
            for day in DAYS:
                conn.execute(LITERAL.format(day=day), prepare=False)
                conn.execute(PARAMETERIZED, (day,)).fetchall()
            conn.execute(HOPELESS, (50,)).fetchall()


def capture(admin_dsn: str, **arguments: Any) -> list[str]:
    """CALL laser.capture() for the advisor database only; its notices."""
    arguments.setdefault("min_mean_ms", 5)
    arguments.setdefault("databases", [DB])
    named = ", ".join(f"{name} => %({name})s" for name in arguments)
    notices: list[str] = []
    with _connect(admin_dsn) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute(f"CALL laser.capture({named})", arguments)
    return notices


def rows(dsn: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def captured(adv: dict[str, str]) -> dict[str, Any]:
    """The workload, then one capture: what the capture tests read. Its advisories are read, never
    reviewed: a test that reviews or revalidates advises a statement of its own (`advise`), so that
    no test depends on another having run before it."""
    run_workload(adv["app"])
    notices = capture(adv["admin"])
    run = rows(adv["admin"], "SELECT * FROM laser.capture_runs ORDER BY id DESC LIMIT 1")[0]
    mine = "SELECT * FROM laser.advisories WHERE normalized_sql LIKE %s OR normalized_sql LIKE %s ORDER BY id"
    return {"notices": notices, "run": run,
            "advisories": rows(adv["admin"], mine, ("%count(*), sum(amount)%", "%ORDER BY id%")),
            "attempts": rows(adv["admin"], "SELECT * FROM laser.capture_attempts WHERE run_id = %s ORDER BY id",
                             (run["id"],))}


def advise(adv: dict[str, str], statement: str) -> dict[str, Any]:
    """Run `statement` (with `{day}`) on each day as the app, capture, and return its one advisory."""
    with _connect(adv["app"]) as conn:
        for day in DAYS:
            conn.execute(statement.format(day=day), prepare=False)
    capture(adv["admin"])
    head = statement.split(" WHERE ")[0] + " WHERE %"
    found = rows(adv["admin"], "SELECT * FROM laser.advisories WHERE normalized_sql LIKE %s", (head,))
    assert len(found) == 1, rows(adv["admin"], "SELECT outcome, message FROM laser.capture_attempts"
                                               " WHERE query LIKE %s", (head,))
    return found[0]


def _advisory(captured: dict[str, Any], fragment: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [a for a in captured["advisories"] if fragment in a["normalized_sql"]]
    assert len(found) == 1, [a["normalized_sql"] for a in captured["advisories"]]
    return found[0]


# -- capture ------------------------------------------------------------------------------------

def test_capture_advises_literal_and_parameterized_statements_verified_on_each_parameter_set(
        captured: dict[str, Any]) -> None:
    assert len(captured["advisories"]) == 2, [(a["outcome"], a["message"], a["query"]) for a in captured["attempts"]]
    literal = _advisory(captured, "count(*), sum(amount)")
    parameterized = _advisory(captured, "ORDER BY id")
    for advisory in (literal, parameterized):
        assert advisory["status"] == "pending"
        assert advisory["role"] == APP
        assert advisory["database"] == DB
        assert "$1" in advisory["normalized_sql"] and "$1" in advisory["rewritten_sql"]
        assert "created_at >=" in advisory["rewritten_sql"]
        assert advisory["backend"] == "rules" and "sqlglot" in advisory["backend_version"]
        # Verified on each of at least three parameter sets, each one a real execution from the log.
        sets, per_set = advisory["parameter_sets"], advisory["per_set"]
        assert len(sets) >= 3 and len(per_set) == len(sets)
        assert {s["values"]["1"] for s in sets} >= set(DAYS)
        assert all("server log" in source for s in sets for source in s["sources"].values())
        assert all(entry["status"] == "faster" and entry["speedup"] > 1.1 for entry in per_set)
        assert advisory["speedup_min"] == pytest.approx(min(e["speedup"] for e in per_set), rel=1e-3)
        assert advisory["speedup"] >= advisory["speedup_min"]
        assert advisory["calls"] >= 2 and advisory["mean_exec_ms"] > 5
        assert advisory["plan_before"] and advisory["plan_after"]
        assert "-" in advisory["diff"] and "+" in advisory["diff"] and "created_at" in advisory["pretty_after"]
        assert advisory["outcome"]["verified"] is True
    # The executable example is the statement with the first set bound (the literal form for literals).
    assert literal["original_sql"].count("'") >= 2 and "$1" not in literal["original_sql"]


def test_capture_records_runs_attempts_and_backoff(adv: dict[str, str], captured: dict[str, Any]) -> None:
    run = captured["run"]
    assert run["status"] == "finished" and run["advised"] == 2
    outcomes = {a["query"]: a for a in captured["attempts"]}
    hopeless = next(a for q, a in outcomes.items() if "amount >" in q)
    assert hopeless["outcome"] == "no_improvement" and hopeless["retry_after"] is not None
    assert any("2 advised" in n for n in captured["notices"])
    # History: every advisory was created pending (its first entry).
    first = rows(adv["admin"], "SELECT DISTINCT ON (advisory_id) advisory_id, from_status, to_status"
                               " FROM laser.advisory_history WHERE advisory_id = ANY(%s) ORDER BY advisory_id, id",
                 ([a["id"] for a in captured["advisories"]],))
    assert [(h["from_status"], h["to_status"]) for h in first] == [(None, "pending"), (None, "pending")]


def test_second_capture_skips_what_is_advised_or_backing_off(adv: dict[str, str], captured: dict[str, Any]) -> None:
    run_workload(adv["app"], repeat=1)
    capture(adv["admin"])
    again = rows(adv["admin"], "SELECT id FROM laser.advisories WHERE normalized_sql = ANY(%s) ORDER BY id",
                 ([a["normalized_sql"] for a in captured["advisories"]],))
    assert [a["id"] for a in again] == [a["id"] for a in captured["advisories"]]
    runs = rows(adv["admin"], "SELECT * FROM laser.capture_runs ORDER BY id DESC LIMIT 1")
    assert runs[0]["considered"] == 0, rows(adv["admin"], "SELECT * FROM laser.capture_attempts")


def test_backoff_doubles_and_a_slower_statement_is_retried(adv: dict[str, str], captured: dict[str, Any]) -> None:
    # The backoff of the hopeless statement has passed: it is tried again, and waits twice as long.
    with _connect(adv["admin"]) as conn:
        conn.execute("UPDATE laser.capture_attempts SET retry_after = now() - interval '1 minute'"
                     " WHERE query LIKE '%amount >%'")
    capture(adv["admin"], retry_after="1 hour")
    tries = rows(adv["admin"], "SELECT outcome, retry_after - finished_at AS wait FROM laser.capture_attempts"
                               " WHERE query LIKE '%amount >%' ORDER BY id")
    assert [t["outcome"] for t in tries] == ["no_improvement", "no_improvement"]
    assert 7000 <= tries[-1]["wait"].total_seconds() <= 7300  # 2 x 1 hour


# -- review: status machine, history, roles -------------------------------------------------

def test_approve_reject_and_illegal_transitions(adv: dict[str, str]) -> None:
    mine = advise(adv, "SELECT count(id) AS reviewed FROM adv_orders WHERE created_at::date = '{day}'")["id"]
    with _connect(adv["reviewer"]) as conn:
        approved = conn.execute("SELECT * FROM laser.approve(%s, 'fits the reporting job')", (mine,)).fetchone()
        assert approved[1] == "approved" and approved[2] == REVIEWER and approved[4] == "fits the reporting job"
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="is approved, not pending"):
            conn.execute("SELECT laser.reject(%s, 'changed my mind')", (mine,))
        with pytest.raises(errors.NoDataFound, match="no advisory with id 999999"):
            conn.execute("SELECT laser.approve(999999)")
        pending = conn.execute("SELECT id, est_saved_s FROM laser.pending_advisories").fetchall()
        assert mine not in [p[0] for p in pending]
        diff = conn.execute("SELECT before, after, diff FROM laser.advisory_diff WHERE id = %s", (mine,)).fetchone()
        assert "WHERE CAST(created_at AS date) = $1" in diff[0] and "created_at >=" in diff[1]
        assert diff[2].startswith("--- original")
    with _connect(adv["admin"]) as conn:  # not even a superuser's UPDATE may skip the machine
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="cannot become pending") as info:
            conn.execute("UPDATE laser.advisories SET status = 'pending' WHERE id = %s", (mine,))
        assert "only becomes stale" in (info.value.diag.message_hint or "")
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match="cannot be changed"):
            conn.execute("UPDATE laser.advisories SET rewritten_sql = 'SELECT 1' WHERE id = %s", (mine,))
    history = rows(adv["admin"], "SELECT from_status, to_status, changed_by, reason FROM laser.advisory_history"
                                 " WHERE advisory_id = %s ORDER BY id", (mine,))
    assert [(h["from_status"], h["to_status"]) for h in history] == [(None, "pending"), ("pending", "approved")]
    assert history[-1]["changed_by"] == REVIEWER and history[-1]["reason"] == "fits the reporting job"


def test_ordinary_users_cannot_touch_advisories_but_can_rewrite(adv: dict[str, str], captured: dict[str, Any]) -> None:
    some_id = captured["advisories"][0]["id"]
    with _connect(adv["outsider"]) as conn:
        for statement in ("SELECT * FROM laser.advisories", "SELECT * FROM laser.pending_advisories",
                          f"SELECT laser.approve({some_id})", f"SELECT laser.reject({some_id})",
                          "CALL laser.capture()", "CALL laser.revalidate()",
                          "UPDATE laser.advisories SET note = 'x'"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)
        # laser_rewrite stays open to everyone (it verifies with the caller's own privileges).
        assert conn.execute("SELECT laser_rewrite('SELECT 1')").fetchone()[0] == "SELECT 1"
    with _connect(adv["reviewer"]) as conn:  # reviewers review; they cannot edit or capture
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("UPDATE laser.advisories SET note = 'x'")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("CALL laser.capture()")


# -- revalidation ------------------------------------------------------------------------------

def _status(dsn: str, advisory: int) -> dict[str, Any]:
    return rows(dsn, "SELECT status, status_reason, validation FROM laser.advisories WHERE id = %s", (advisory,))[0]


def test_revalidation_marks_stale_when_the_rewrite_stops_winning_and_pending_when_it_wins_again(
        adv: dict[str, str]) -> None:
    literal = advise(adv, "SELECT sum(id) AS revalidated FROM adv_orders WHERE created_at::date = '{day}'")["id"]
    with _connect(adv["reviewer"]) as conn:
        conn.execute("SELECT laser.approve(%s)", (literal,))
    with _connect(adv["admin"]) as conn:
        conn.execute("CALL laser.revalidate()")
    still = _status(adv["admin"], literal)
    assert still["status"] == "approved" and still["validation"]["status"] == "faster"

    # The data changes shape: created_at is now stored as text. The original still runs (text casts
    # to date); the rewrite compares text with a date and no longer runs: it stops winning.
    with _connect(adv["app"]) as conn:
        conn.execute("ALTER TABLE adv_orders ALTER COLUMN created_at TYPE text USING created_at::text")
    try:
        with _connect(adv["admin"]) as conn:
            conn.execute("CALL laser.revalidate()")
        stale = _status(adv["admin"], literal)
        assert stale["status"] == "stale", stale
        assert stale["status_reason"].startswith("revalidation: ") and stale["validation"]["status"] != "faster"
    finally:
        with _connect(adv["app"]) as conn:
            conn.execute("ALTER TABLE adv_orders ALTER COLUMN created_at TYPE timestamp USING created_at::timestamp")
            conn.execute("ANALYZE adv_orders")
    with _connect(adv["admin"]) as conn:
        conn.execute("CALL laser.revalidate()")
    again = _status(adv["admin"], literal)
    assert again["status"] == "pending" and again["status_reason"].startswith("verified again")
    history = rows(adv["admin"], "SELECT from_status, to_status FROM laser.advisory_history"
                                 " WHERE advisory_id = %s ORDER BY id", (literal,))
    assert [(h["from_status"], h["to_status"]) for h in history][-2:] == [("approved", "stale"), ("stale", "pending")]
    with _connect(adv["admin"]) as conn, pytest.raises(errors.ObjectNotInPrerequisiteState,
        match="only approved and stale"):
        conn.execute("CALL laser.revalidate(%s)", (literal,))


# -- bad input and faults ---------------------------------------------------------------------

def test_bad_arguments_and_transaction_blocks_are_refused_and_change_nothing(adv: dict[str, str]) -> None:
    before = rows(adv["admin"], "SELECT count(*) AS n FROM laser.capture_runs")[0]["n"]
    with _connect(adv["admin"]) as conn:
        with pytest.raises(errors.InvalidParameterValue, match="min_share is a fraction"):
            conn.execute("CALL laser.capture(min_share => 2)")
        with pytest.raises(errors.InvalidParameterValue, match="top_n and budget_s must be positive"):
            conn.execute("CALL laser.capture(top_n => 0)")
        with pytest.raises(errors.NoDataFound, match="no advisory with id 424242"):
            conn.execute("CALL laser.revalidate(424242)")
    with psycopg.connect(adv["admin"]) as conn, pytest.raises(  # not autocommit: inside a transaction block
            psycopg.Error, match="cannot run inside a transaction block"):
        conn.execute("CALL laser.capture()")
    assert rows(adv["admin"], "SELECT count(*) AS n FROM laser.capture_runs")[0]["n"] == before
    with _connect(adv["admin"]) as conn, pytest.raises(errors.FeatureNotSupported,
        match="pg_cron is not installed") as info:
        conn.execute("SELECT laser.schedule()")
    assert "laser advise" in (info.value.diag.message_hint or "")


def test_sidecar_down_records_the_attempt_and_the_next_run_advises(adv: dict[str, str], captured: dict[str,
    Any]) -> None:
    new_statement = "SELECT max(amount) FROM adv_orders WHERE created_at::date = '{day}'"
    with _connect(adv["app"]) as conn:
        for day in DAYS:
            conn.execute(new_statement.format(day=day), prepare=False)
    with _connect(adv["admin"]) as conn:
        conn.execute("ALTER DATABASE laser_advisor SET laser.sidecar_address = '127.0.0.1:9'")
    try:
        notices = capture(adv["admin"])
    finally:
        with _connect(adv["admin"]) as conn:
            conn.execute("ALTER DATABASE laser_advisor RESET laser.sidecar_address")
    run = rows(adv["admin"], "SELECT * FROM laser.capture_runs ORDER BY id DESC LIMIT 1")[0]
    assert run["status"] == "sidecar_unavailable" and "not reachable" in run["message"], notices
    attempt = rows(adv["admin"], "SELECT * FROM laser.capture_attempts WHERE query LIKE 'SELECT max(amount)%'")
    assert [a["outcome"] for a in attempt] == ["sidecar_unavailable"]
    assert not rows(adv["admin"], "SELECT id FROM laser.advisories WHERE normalized_sql LIKE 'SELECT max(amount)%'")
    capture(adv["admin"])  # the sidecar is back: nothing was lost
    advised = rows(adv["admin"], "SELECT id FROM laser.advisories WHERE normalized_sql LIKE 'SELECT max(amount)%'")
    assert len(advised) == 1


def _wait_for(predicate: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_two_captures_at_once_and_review_during_capture(adv: dict[str, str]) -> None:
    statement = "SELECT min(amount) FROM adv_orders WHERE created_at::date = '{day}'"
    to_reject = advise(adv, "SELECT avg(id) AS to_reject FROM adv_orders WHERE created_at::date = '{day}'")
    with _connect(adv["app"]) as conn:
        for day in DAYS:
            conn.execute(statement.format(day=day), prepare=False)
    first_error: list[BaseException] = []

    def first() -> None:
        try:
            capture(adv["admin"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            first_error.append(exc)

    worker = threading.Thread(target=first)
    worker.start()
    _wait_for(lambda: rows(adv["admin"], "SELECT 1 FROM laser.capture_attempts WHERE outcome = 'running'"))
    notices = capture(adv["admin"])  # the second one, while the first works
    assert any("another capture is running" in n for n in notices)
    with _connect(adv["reviewer"]) as conn:  # review while capture runs: not blocked, not lost
        conn.execute("SELECT laser.reject(%s, 'not now')", (to_reject["id"],))
    worker.join(timeout=300)
    assert not first_error, first_error
    advised = rows(adv["admin"], "SELECT id FROM laser.advisories WHERE normalized_sql LIKE 'SELECT min(amount)%'")
    assert len(advised) == 1
    assert _status(adv["admin"], to_reject["id"])["status"] == "rejected"
    skipped = rows(adv["admin"], "SELECT * FROM laser.capture_runs WHERE status = 'skipped'")
    assert skipped and skipped[-1]["considered"] == 0


def test_database_restart_during_capture_is_picked_up_by_the_next_run(
        cluster: LocalCluster, adv: dict[str, str]) -> None:
    statement = "SELECT avg(amount) FROM adv_orders WHERE created_at::date = '{day}'"
    with _connect(adv["app"]) as conn:
        for day in DAYS:
            conn.execute(statement.format(day=day), prepare=False)
    failures: list[BaseException] = []

    def doomed() -> None:
        try:
            capture(adv["admin"])
        except BaseException as exc:  # noqa: BLE001 - the restart kills this session
            failures.append(exc)

    worker = threading.Thread(target=doomed)
    worker.start()
    _wait_for(lambda: rows(adv["admin"], "SELECT 1 FROM laser.capture_attempts WHERE outcome = 'running'"))
    cluster.stop()
    cluster.start()
    cluster.wait_ready()
    worker.join(timeout=120)
    assert failures, "the restart should have ended the capture's session"
    capture(adv["admin"])
    runs = rows(adv["admin"], "SELECT status FROM laser.capture_runs WHERE kind = 'capture' ORDER BY id")
    assert "interrupted" in [r["status"] for r in runs] and runs[-1]["status"] == "finished"
    assert rows(adv["admin"], "SELECT 1 FROM laser.capture_attempts WHERE outcome = 'interrupted'")
    assert not rows(adv["admin"], "SELECT 1 FROM laser.capture_attempts WHERE outcome = 'running'")
    advised = rows(adv["admin"], "SELECT id FROM laser.advisories WHERE normalized_sql LIKE 'SELECT avg(amount)%'")
    assert len(advised) == 1


def test_laser_advise_command_captures_and_lists_pending(adv: dict[str, str],
    capsys: pytest.CaptureFixture[str]) -> None:
    """`laser advise`: the scheduler where pg_cron is not installed (here: one round)."""
    from laser.cli import main

    statement = "SELECT sum(amount) AS s FROM adv_orders WHERE created_at::date = '{day}'"
    with _connect(adv["app"]) as conn:
        for day in DAYS:
            conn.execute(statement.format(day=day), prepare=False)
    assert main(["advise", "--dsn", adv["admin"], "--min-mean-ms", "5", "--databases", DB,
                 "--revalidate-every", "1"]) == 0
    out = capsys.readouterr().out
    assert "laser: capture run" in out and "laser: revalidated" in out
    advised = rows(adv["admin"], "SELECT id FROM laser.advisories WHERE normalized_sql LIKE 'SELECT sum(amount) AS s%'")
    assert len(advised) == 1 and f"#{advised[0]['id']} {DB}" in out


def test_without_log_samples_parameter_sets_come_from_the_statistics(adv: dict[str, str]) -> None:
    """A statement the log does not have: at least three sets from pg_stats, each verified."""
    statement = "SELECT count(*) AS n FROM adv_orders WHERE created_at::date = '{day}'"
    with _connect(adv["admin"]) as conn:  # a superuser session that logs nothing
        conn.execute("SET log_min_duration_statement = -1")
        conn.execute(statement.format(day=DAYS[0]), prepare=False)
    capture(adv["admin"])
    advised = rows(adv["admin"], "SELECT parameter_sets, per_set, role FROM laser.advisories"
                                 " WHERE normalized_sql LIKE 'SELECT count(*) AS n%'")
    assert len(advised) == 1, rows(adv["admin"], "SELECT outcome, message FROM laser.capture_attempts"
                                                 " WHERE query LIKE 'SELECT count(*) AS n%'")
    sets = advised[0]["parameter_sets"]
    assert len(sets) >= 3 and advised[0]["role"] == "postgres"
    sources = [source for s in sets for source in s["sources"].values()]
    assert all("adv_orders.created_at" in source and "server log" not in source for source in sources), sources
    assert len({s["values"]["1"] for s in sets}) == len(sets)
    assert all(entry["status"] == "faster" for entry in advised[0]["per_set"])
