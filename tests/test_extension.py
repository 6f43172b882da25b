"""laser_rewrite / laser_rewrite_evidence / laser_verify in a real database, through a real sidecar."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

pytestmark = pytest.mark.usefixtures("sidecar")

# A fingerprint of the demo data and of every write ever made to it.
FINGERPRINT = """
SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM orders), (SELECT count(*) FROM events),
       (SELECT md5(string_agg(id::text || ':' || email, ',' ORDER BY id)) FROM users),
       (SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables),
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace)
"""


def _fingerprint(conn: psycopg.Connection) -> tuple[Any, ...]:
    conn.execute("SELECT pg_stat_force_next_flush()")
    row = conn.execute(FINGERPRINT).fetchone()
    assert row is not None
    return tuple(row)


BAD_INPUTS = [
    ("DELETE FROM orders", errors.InvalidParameterValue, "only read-only queries are accepted"),
    ("SELECT 1; DROP TABLE users", errors.InvalidParameterValue, "exactly one statement is accepted; got 2"),
    ("SELEC id FROM users", errors.InvalidParameterValue, "syntax error"),
    ("", errors.InvalidParameterValue, "query is empty"),
    (None, errors.InvalidParameterValue, "query is NULL"),
    ("SELECT " + "1" * (1 << 20), errors.InvalidParameterValue, "at most 262144 bytes are accepted"),
    ("WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x", errors.InvalidParameterValue,
     "data-modifying statements are not accepted"),
    ("SELECT no_such_column FROM users", errors.InvalidParameterValue, "the query does not run"),
    ("SELECT * FROM users FOR UPDATE", errors.InvalidParameterValue, "locking clauses"),
]


@pytest.mark.parametrize(("query", "error", "message"), BAD_INPUTS,
                         ids=["delete", "two-statements", "syntax", "empty", "null", "1MB", "dml-cte",
                              "unknown-column", "for-update"])
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    admin: psycopg.Connection, demo_dsn: str, query: str | None, error: type[Exception], message: str
) -> None:
    before = _fingerprint(admin)
    with psycopg.connect(demo_dsn, autocommit=True) as conn, pytest.raises(error) as raised:
        conn.execute("SELECT laser_rewrite(%s)", (query,))
    assert message in str(raised.value)
    assert str(raised.value).startswith("laser: ")
    assert _fingerprint(admin) == before


def test_rewrite_and_evidence_agree(demo_dsn: str) -> None:
    query = "SELECT id, email FROM users WHERE extract(year FROM signup_date) = 2023"
    notices: list[str] = []
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        rewritten = conn.execute("SELECT laser_rewrite(%s)", (query,)).fetchone()[0]
        evidence = conn.execute("SELECT laser_rewrite_evidence(%s)", (query,)).fetchone()[0]
    assert evidence["original_sql"] == query
    assert set(evidence) >= {"status", "speedup", "original_ms", "rewrite_ms", "latencies_ms",
                             "equivalence", "plan", "attempts", "verified", "measured_at"}
    # the rules' beam search says what it explored, and each attempt which rule sequence made it
    assert evidence["search"]["kind"] == "beam"
    assert evidence["search"]["planned"] >= evidence["search"]["candidates"] >= len(evidence["attempts"]) >= 1
    assert evidence["attempts"][0]["generation"]["rules"] == ["sargable_predicates"]
    assert evidence["attempts"][0]["generation"]["estimated_cost"] > 0
    if evidence["verified"]:
        assert rewritten == evidence["rewritten_sql"] != query
        assert evidence["speedup"] >= 1.1
        assert evidence["equivalence"]["original_hash"] == evidence["equivalence"]["candidate_hash"]
    else:
        assert rewritten == query
        assert any("no verified improvement" in n for n in notices)


def test_no_candidate_returns_the_original_with_a_notice(demo_dsn: str) -> None:
    notices: list[str] = []
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        answer = conn.execute("SELECT laser_rewrite('SELECT id FROM users WHERE id = 7')").fetchone()[0]
    assert answer == "SELECT id FROM users WHERE id = 7"
    assert notices and notices[0].startswith("laser: no verified improvement:")


def test_verify_reports_equivalence_and_counterexample_rows(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        same = conn.execute(
            "SELECT laser_verify('SELECT id FROM users WHERE id < 100', 'SELECT id FROM users WHERE id <= 99')"
        ).fetchone()[0]
        differ = conn.execute(
            "SELECT laser_verify('SELECT id FROM users WHERE id < 100', 'SELECT id FROM users WHERE id < 99')"
        ).fetchone()[0]
    assert same["equivalent"] is True
    assert differ["status"] == "not_equivalent"
    assert differ["evidence"]["equivalence"]["examples"]["only_in_original"] == [["99"]]


def test_candidate_that_tries_to_write_is_stopped_and_nothing_changes(admin: psycopg.Connection, demo_dsn: str) -> None:
    admin.execute("""
        CREATE OR REPLACE FUNCTION public.sneaky_insert() RETURNS int LANGUAGE plpgsql AS
        $$ BEGIN INSERT INTO users (id, email, name, country, signup_date, is_active)
                 VALUES (-1, 'x@x', 'x', 'XX', current_date, true);
           RETURN 1; END $$""")
    before = _fingerprint(admin)
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        verdict = conn.execute(
            "SELECT laser_verify('SELECT 1 AS one', 'SELECT public.sneaky_insert() AS one')").fetchone()[0]
    assert verdict["status"] == "exec_error"
    assert "read-only transaction" in verdict["detail"]
    assert _fingerprint(admin) == before
    admin.execute("DROP FUNCTION public.sneaky_insert()")


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (a hung sidecar)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sidecar_not_running_is_a_clear_error_quickly(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute(f"SET laser.sidecar_address = '127.0.0.1:{_unused_port()}'")
        conn.execute("SET laser.timeout_ms = 3000")
        started = time.monotonic()
        with pytest.raises(errors.ConnectionFailure) as raised:
            conn.execute("SELECT laser_rewrite('SELECT 1')")
    assert time.monotonic() - started < 3.0
    assert "is not reachable" in str(raised.value)
    assert "laser sidecar" in (raised.value.diag.message_hint or "")


def test_hung_sidecar_times_out_within_laser_timeout_ms(demo_dsn: str, silent_server: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute(f"SET laser.sidecar_address = '{silent_server}'")
        conn.execute("SET laser.timeout_ms = 1500")
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("SELECT laser_rewrite('SELECT 1')")
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 1.0
    assert raised.value.sqlstate == "57014"
    assert "no answer from the sidecar" in str(raised.value)
    assert "within laser.timeout_ms = 1500 ms" in str(raised.value)


def test_invalid_timeout_setting_is_refused(demo_dsn: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        conn.execute("SET laser.timeout_ms = 'soon'")
        with pytest.raises(errors.InvalidParameterValue, match="laser.timeout_ms must be a positive"):
            conn.execute("SELECT laser_rewrite('SELECT 1')")


# -- privileges: the sidecar verifies with the caller's privileges ---------------------------------

@pytest.fixture(scope="module")
def private_tables(cluster, admin_dsn: str) -> Iterator[dict[str, str]]:
    """`secret` readable only by its owner; `notes` with a row-level security policy per author."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("""
            DROP TABLE IF EXISTS public.secret, public.notes;
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nosy') THEN CREATE ROLE nosy LOGIN; END IF;
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'author_a') THEN CREATE ROLE author_a LOGIN; END IF;
            END $$;
            CREATE TABLE public.secret (id int PRIMARY KEY, salary int NOT NULL);
            INSERT INTO public.secret SELECT g, g * 1000 FROM generate_series(1, 100) g;
            CREATE TABLE public.notes (id int PRIMARY KEY, author text NOT NULL, body text NOT NULL);
            INSERT INTO public.notes SELECT g, CASE WHEN g <= 3 THEN 'author_a' ELSE 'someone_else' END, 'note ' || g
              FROM generate_series(1, 10) g;
            ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
            CREATE POLICY own_notes ON public.notes FOR SELECT USING (author = current_user);
            GRANT SELECT ON public.notes TO author_a, nosy;
        """)
    yield {"nosy": cluster.dsn("laser_demo", "nosy"), "author_a": cluster.dsn("laser_demo", "author_a")}
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.secret, public.notes")


def test_caller_without_select_is_refused(private_tables: dict[str, str]) -> None:
    with psycopg.connect(private_tables["nosy"], autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table secret"):
            conn.execute("SELECT laser_rewrite('SELECT sum(salary) FROM secret')")
        # ... and a candidate may not peek either: the verdict says nothing about the data.
        verdict = conn.execute(
            "SELECT laser_verify('SELECT 1 AS x', 'SELECT count(*)::int AS x FROM secret')").fetchone()[0]
    assert verdict["status"] == "exec_error"
    assert "permission denied" in verdict["detail"]
    assert "equivalence" not in verdict["evidence"]


def test_row_level_security_applies_to_verification(private_tables: dict[str, str]) -> None:
    """author_a sees 3 of the 10 notes: equivalence is judged on those rows only — on the live data
    and on the perturbed copies, which are sampled as the caller."""
    with psycopg.connect(private_tables["author_a"], autocommit=True) as conn:
        three = conn.execute(
            "SELECT laser_verify('SELECT count(*) AS n FROM notes',"
            " 'SELECT count(*) AS n FROM notes WHERE author = ''author_a''')").fetchone()[0]
        ten = conn.execute(
            "SELECT laser_verify('SELECT count(*) AS n FROM notes', 'SELECT 10::bigint AS n')").fetchone()[0]
    assert three["equivalent"] is True, three
    assert "skipped" not in three["evidence"]["perturbed_instances"]
    assert ten["status"] == "not_equivalent"


def test_current_role_is_used_not_just_the_login(cluster, private_tables: dict[str, str], admin_dsn: str) -> None:
    """A login role that SETs ROLE to a NOLOGIN group role is verified as that group role."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditors') THEN CREATE ROLE auditors NOLOGIN; END IF;
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'clerk') THEN
                CREATE ROLE clerk LOGIN NOINHERIT;
              END IF;
            END $$;
            GRANT auditors TO clerk;
            GRANT SELECT ON public.secret TO auditors;
        """)
    query = "SELECT laser_verify('SELECT sum(salary) AS s FROM secret', 'SELECT sum(salary + 0) AS s FROM secret')"
    with psycopg.connect(cluster.dsn("laser_demo", "clerk"), autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(query)
        conn.execute("SET ROLE auditors")
        verdict = conn.execute(query).fetchone()[0]
    assert verdict["equivalent"] is True, verdict


def test_callers_function_cannot_switch_to_a_more_privileged_role(private_tables: dict[str, str],
                                                                  admin_dsn: str) -> None:
    """The sidecar logs in as the caller, so set_config('role', ...) inside the caller's own
    function reaches no role the caller could not reach anyway."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE SCHEMA IF NOT EXISTS nosy_own AUTHORIZATION nosy;
        """)
    with psycopg.connect(private_tables["nosy"], autocommit=True) as conn:
        conn.execute("""
            CREATE OR REPLACE FUNCTION nosy_own.peek() RETURNS bigint LANGUAGE plpgsql AS $$
            BEGIN
              PERFORM set_config('role', 'postgres', true);
              RETURN (SELECT sum(salary) FROM public.secret);
            END $$""")
        verdict = conn.execute(
            "SELECT laser_verify('SELECT 1::bigint AS s', 'SELECT nosy_own.peek() AS s')").fetchone()[0]
    assert verdict["status"] == "exec_error", verdict
    assert "permission denied" in verdict["detail"]
    assert "equivalence" not in verdict["evidence"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA nosy_own CASCADE")


def test_unknown_role_is_refused(sidecar: str, cluster_id: str) -> None:
    import grpc
    from laser_proto import laser_pb2, laser_pb2_grpc

    request = laser_pb2.VerifyRequest(original="SELECT 1", candidate="SELECT 2",
                                      target=laser_pb2.Target(database="laser_demo", role="ghost", login_role="ghost",
                                                              server_id=cluster_id))
    with grpc.insecure_channel(sidecar) as channel, pytest.raises(grpc.RpcError) as failed:
        laser_pb2_grpc.LaserStub(channel).Verify(request, timeout=30)
    assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "role 'ghost' does not exist" in (failed.value.details() or "")


def test_set_role_mode_needs_the_grant(cluster, admin: psycopg.Connection) -> None:
    """In set_role mode (compose: TCP + password) a caller role not granted to the sidecar is refused."""
    from sidecar.verify import ReadOnlySession
    from sidecar.verify.session import PermissionRefused

    admin.execute("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ungranted') "
                  "THEN CREATE ROLE ungranted LOGIN; END IF; END $$")
    with pytest.raises(PermissionRefused, match="may not act as role 'ungranted'"):
        ReadOnlySession.connect(cluster.sidecar_dsn() + " dbname=laser_demo", "ungranted")
    admin.execute("GRANT ungranted TO laser_sidecar")
    try:
        with ReadOnlySession.connect(cluster.sidecar_dsn() + " dbname=laser_demo", "ungranted") as session:
            run = session.run("SELECT current_user::text")
        assert run.rows == [("ungranted",)]
    finally:
        admin.execute("REVOKE ungranted FROM laser_sidecar")


def test_model_info_names_the_backend(demo_dsn: str, sidecar: str) -> None:
    with psycopg.connect(demo_dsn, autocommit=True) as conn:
        info = conn.execute("SELECT laser_model_info()").fetchone()[0]
    assert info["backend"] == "rules" and info["model"] == ""
    assert "decorrelate_scalar_aggregates" in info["details"]["rules"]
    assert info["sidecar_address"] == sidecar
    assert info["repair_rounds"] == 0  # self-correction applies to model backends only


def test_extension_versions_agree() -> None:
    import re
    from pathlib import Path

    from laser.localdb import EXTENSION_VERSION

    root = Path(__file__).resolve().parent.parent / "pg_extension"
    built = re.search(r'^VERSION = "([^"]+)"', (root / "build.py").read_text(), re.MULTILINE)
    assert built is not None and built.group(1) == EXTENSION_VERSION
    assert f"default_version = '{EXTENSION_VERSION}'" in (root / "laser.control").read_text()
    assert f"/usr/local/lib/laser/{EXTENSION_VERSION}" in (root / "Dockerfile").read_text()


def test_verified_wins_become_the_callers_demonstrations(demo_dsn: str, admin: psycopg.Connection,
                                                          sidecar: str) -> None:
    query = "SELECT count(*) AS wins FROM orders WHERE created_at::date = DATE '2024-03-07'"
    readonly_query = "SELECT count(*) AS wins_ro FROM orders WHERE created_at::date = DATE '2024-03-08'"
    admin.execute("DELETE FROM laser.rewrite_wins WHERE original_sql IN (%s, %s)", (query, readonly_query))
    admin.execute("DROP ROLE IF EXISTS laser_outsider")
    admin.execute("CREATE ROLE laser_outsider NOLOGIN")
    try:
        with psycopg.connect(demo_dsn, autocommit=True) as conn:
            rewritten = conn.execute("SELECT laser_rewrite(%s)", (query,)).fetchone()[0]
            assert rewritten != query
            mine = conn.execute("SELECT role, speedup FROM laser.demonstrations WHERE original_sql = %s",
                                (query,)).fetchall()
            assert len(mine) == 1 and mine[0][0] == "shop" and mine[0][1] >= 1.5
            # A role records only in its own name: row level security refuses anything else.
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("INSERT INTO laser.rewrite_wins (role, original_sql, rewritten_sql, speedup) "
                             "VALUES ('postgres', 'SELECT 1', 'SELECT 1', 9)")
            # In a read-only transaction the answer still comes; nothing is recorded.
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                assert conn.execute("SELECT laser_rewrite(%s)", (readonly_query,)).fetchone()[0] != readonly_query
        recorded = admin.execute("SELECT original_sql, role FROM laser.rewrite_wins WHERE original_sql IN (%s, %s)",
                                 (query, readonly_query)).fetchall()
        assert recorded == [(query, "shop")]
        # Another role does not see shop's statements.
        with admin.transaction():
            admin.execute("SET LOCAL ROLE laser_outsider")
            seen = admin.execute("SELECT count(*) FROM laser.demonstrations WHERE original_sql = %s", (query,))
            assert seen.fetchone()[0] == 0
    finally:
        admin.execute("DELETE FROM laser.rewrite_wins WHERE original_sql IN (%s, %s)", (query, readonly_query))
        admin.execute("DROP ROLE IF EXISTS laser_outsider")
