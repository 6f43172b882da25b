"""Hostile input, fuzzed: the fixture queries mutated (keywords, nesting, comments, dollar quoting, NUL,
megabyte literals, 10,000 nested parentheses, invalid UTF-8) and fed to the guard, the verifier and
the real sidecar.

Properties: the guard answers with a GuardError saying why, or admits one read-only statement;
nothing admitted writes (every candidate is verified against the fixture database, whose tables,
sequences and objects are fingerprinted before and after); the sidecar answers every request with
a result or a clear status and is still serving afterwards.

Deterministic (derandomized, no example database) and small, to keep CI fast.
"""
from __future__ import annotations

from collections.abc import Iterator

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from laser_proto import laser_pb2, laser_pb2_grpc
from pglast.parser import scan

from laser import demo
from laser.bench.verifier import FIXTURE_DB, all_pairs, ensure_fixture_database
from laser.localdb import LocalCluster
from sidecar.verify import GuardError, ReadOnlySession, Verifier, VerifierConfig, guard
from sidecar.verify.guard import MAX_NESTING, MAX_QUERY_BYTES
from sidecar.verify.outcome import OutcomeStatus

PAIRS = all_pairs()
BASES = sorted({text for pair in PAIRS for text in (pair.original, pair.candidate)})

WRITER = "laser_fuzz_write"
"""A user function that writes: the guard cannot know it does, the read-only transaction stops it."""

FRAGMENTS = [
    "DELETE FROM visits", "INSERT INTO orders DEFAULT VALUES", "UPDATE customers SET tier = 0",
    "DROP TABLE visits", "TRUNCATE visits", ";", "; DELETE FROM visits", "FOR UPDATE", "FOR SHARE",
    "INTO TEMP stolen", "COPY visits TO STDOUT", "DO $$BEGIN DELETE FROM visits; END$$", "CALL p()",
    "LOCK visits", "WITH d AS (DELETE FROM visits RETURNING *) SELECT * FROM d", "nextval('orders_id_seq')",
    "pg_sleep(5)", "set_config('search_path', 'x', false)", "pg_advisory_lock(1)", "lo_import('/etc/passwd')",
    "pg_read_file('/etc/passwd')", f"{WRITER}()", f"(SELECT {WRITER}())", "SELECT", "UNION ALL SELECT 1",
    "WHERE", "LIMIT 1", "ORDER BY 1", "(", ")", "'", '"', "$$", "$x$", "E'\\'", "\\", "RETURNING *",
    "VALUES (1)", "TABLE visits", "EXPLAIN ANALYZE", "SET ROLE postgres", "RESET ALL", "COMMIT", "ROLLBACK",
    "BEGIN", "SAVEPOINT s", "PREPARE p AS SELECT 1", "NOTIFY x", "VACUUM", "CREATE TABLE x ()",
    "/* c */", "-- c\n", "/* ; DELETE FROM visits; */", "/* /* nested */ */", "/*", "*/", "--",
    "$t$ ; DELETE FROM visits; $t$", "$t$", "\x00", "\udcff", "\ufeff", "\u202e", "𝔰𝔢𝔩𝔢𝔠𝔱",
]


COMMENTS = ["/* c */", "-- c\n", "/* ; DELETE FROM visits; */", "/* /* nested; */ DROP TABLE visits */",
            "-- ; DELETE FROM visits\n", "/*+ SeqScan(visits) */", "/* $$ ' \" */", "/* \x00 */", "/* \udcff */"]


def _boundaries(text: str) -> list[int]:
    """Token boundaries of `text` (where a fragment splices in as whole tokens)."""
    try:
        return sorted({0, len(text), *(t.start for t in scan(text)), *(t.end + 1 for t in scan(text))})
    except Exception:  # noqa: BLE001 - an unscannable text: its ends will do
        return [0, len(text)]


@st.composite
def _mutation(draw: st.DrawFn, text: str) -> str:
    kind = draw(st.sampled_from(["splice", "anywhere", "comment", "comment", "nest", "parentheses", "dollar",
                                 "dollar", "big", "writer", "invalid_utf8", "delete"]))
    if kind == "comment":  # at a token boundary: the query stays valid (unless it ends in `--`)
        comment = draw(st.sampled_from(COMMENTS))
        at = draw(st.sampled_from(_boundaries(text)))
        return f"{text[:at]} {comment} {text[at:]}"
    if kind == "writer":
        return f"SELECT q.*, {WRITER}() AS w FROM ({text}) AS q"
    if kind in ("splice", "anywhere"):
        fragment = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=8))
        spots = _boundaries(text) if kind == "splice" else list(range(len(text) + 1))
        at = draw(st.sampled_from(spots))
        return f"{text[:at]} {fragment} {text[at:]}"
    if kind == "nest":
        depth = draw(st.sampled_from([1, 3, 50, MAX_NESTING, 2 * MAX_NESTING]))
        return "SELECT * FROM (" * depth + text + ") AS n" * depth
    if kind == "parentheses":
        depth = draw(st.sampled_from([1, 10, 1_000, 10_000]))
        return f"SELECT {'(' * depth}1{')' * depth} AS x FROM ({text}) AS q"
    if kind == "dollar":
        tag = draw(st.sampled_from(["", "t", "x_1"]))
        body = draw(st.sampled_from(FRAGMENTS))
        return f"SELECT ${tag}${body}${tag}$ AS quoted, q.* FROM ({text}) AS q"
    if kind == "big":
        size = draw(st.sampled_from([MAX_QUERY_BYTES // 2, MAX_QUERY_BYTES, 1 << 20]))
        return f"SELECT length('{'x' * size}') AS n, q.* FROM ({text}) AS q"
    if kind == "invalid_utf8":  # what undecodable bytes become in Python (surrogateescape)
        raw = draw(st.binary(min_size=1, max_size=4).filter(lambda b: any(c > 0x7f for c in b)))
        at = draw(st.integers(0, len(text)))
        return text[:at] + raw.decode("utf-8", errors="surrogateescape") + text[at:]
    start = draw(st.integers(0, len(text)))
    return text[:start] + text[start + draw(st.integers(1, 20)):]


@st.composite
def hostile_queries(draw: st.DrawFn) -> tuple[str, str]:
    """(a fixture query, a mutation of it)."""
    base = draw(st.sampled_from(BASES))
    text = base
    for _ in range(draw(st.integers(1, 2))):
        text = draw(_mutation(text))
    return base, text


FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _answer(query: str) -> str:
    """The guard's answer in one word, asserting it is clear: admitted, or refused with a reason."""
    try:
        statement = guard(query)
    except GuardError as exc:
        assert str(exc).strip(), f"a refusal without a reason for {query[:200]!r}"
        return "refused"
    assert "\x00" not in statement.text
    assert guard(statement.text).text == statement.text  # what runs is admitted as it is
    return "admitted"


@pytest.mark.parametrize(("query", "why"), [
    ("SELECT " + "(" * 10_000 + "1" + ")" * 10_000, "syntax error"),
    ("SELECT " + "abs(" * 1_000 + "1" + ")" * 1_000, "nests too deeply"),
    ("SELECT * FROM (" * 300 + "SELECT 1" + ") AS s" * 300, "nests too deeply"),
    (f"SELECT '{'x' * (1 << 20)}'", "at most 262144"),
    ("SELECT 1\x00; DROP TABLE visits", "NUL character"),
    ("SELECT '\udcff'", "not valid UTF-8"),
    ("SELECT $t$ x $t$; DELETE FROM visits", "exactly one statement"),
    ("SELECT 1 /* ; */ ; DELETE FROM visits -- ;", "exactly one statement"),
])
def test_named_hostile_inputs_are_refused_clearly(query: str, why: str) -> None:
    with pytest.raises(GuardError, match=why):
        guard(query)


@settings(FUZZ, max_examples=300)
@given(hostile_queries())
def test_guard_admits_or_refuses_clearly(pair: tuple[str, str]) -> None:
    _answer(pair[1])


def _fingerprint(conn: psycopg.Connection) -> dict[str, object]:
    """Every table's rows, every sequence's state and every relation of the fixture database."""
    tables = [r[0] for r in conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1")]
    found: dict[str, object] = {
        table: conn.execute(psycopg.sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' "
                                            "ORDER BY t::text), '')) FROM public.{} AS t")
                            .format(psycopg.sql.Identifier(table))).fetchone()
        for table in tables}
    found["sequences"] = conn.execute("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1").fetchall()
    found["relations"] = conn.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1").fetchall()
    return found


@pytest.fixture(scope="module")
def fixture_db(cluster: LocalCluster) -> Iterator[tuple[str, str]]:
    """(the role `shop`'s DSN, a superuser DSN) of the fixture database, with a function that writes."""
    shop = ensure_fixture_database(cluster)
    admin = cluster.dsn(FIXTURE_DB)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE OR REPLACE FUNCTION public.{WRITER}() RETURNS integer LANGUAGE sql "
                     "AS 'INSERT INTO public.visits (customer_id) VALUES (1) RETURNING 1'")
        conn.execute(f"GRANT EXECUTE ON FUNCTION public.{WRITER}() TO {demo.DEMO_ROLE}")
        conn.execute(f"GRANT INSERT ON public.visits TO {demo.DEMO_ROLE}")  # only read-only transactions stop it
    yield shop, admin
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"REVOKE INSERT ON public.visits FROM {demo.DEMO_ROLE}")
        conn.execute(f"DROP FUNCTION public.{WRITER}()")


def test_nothing_admitted_writes(fixture_db: tuple[str, str]) -> None:
    shop, admin = fixture_db
    with psycopg.connect(admin, autocommit=True) as conn:
        before = _fingerprint(conn)
    seen: dict[str, int] = {}
    config = VerifierConfig(statement_timeout_ms=3_000, timed_runs=1)
    with ReadOnlySession.connect(shop, None, statement_timeout_ms=3_000) as session:
        verifier = Verifier(session, config)
        profiles = {}

        @settings(FUZZ, max_examples=40)
        @given(hostile_queries())
        def verify_mutation(pair: tuple[str, str]) -> None:
            base, candidate = pair
            if base not in profiles:
                profiles[base] = verifier.prepare(base)
            outcome = verifier.verify(profiles[base], candidate)  # never raises for a bad candidate
            assert outcome.status in OutcomeStatus
            seen[outcome.status.value] = seen.get(outcome.status.value, 0) + 1
            assert session.run("SELECT 1").rows == [(1,)]  # the session is still usable

        verify_mutation()
        # A candidate that calls the writing function is admitted and stopped by the read-only transaction.
        writes = verifier.verify(profiles.get(BASES[0]) or verifier.prepare(BASES[0]),
                                 f"SELECT q.*, {WRITER}() AS w FROM ({BASES[0]}) AS q")
        assert writes.status is OutcomeStatus.EXEC_ERROR and "read-only" in writes.detail, writes
    with psycopg.connect(admin, autocommit=True) as conn:
        assert _fingerprint(conn) == before
        assert not conn.execute("SELECT relname FROM pg_class WHERE relpersistence = 't'").fetchall()
    assert seen.get("guard_refused") and len(seen) > 1, seen  # the mutations reach past the guard too


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        return int(reply.status)


def test_sidecar_answers_hostile_requests_and_stays_up(sidecar: str, fixture_db: tuple[str, str]) -> None:
    target = laser_pb2.Target(database=FIXTURE_DB, role=demo.DEMO_ROLE)
    options = laser_pb2.Options(statement_timeout_ms=3_000, timed_runs=1)
    answered: dict[str, int] = {}
    with grpc.insecure_channel(sidecar) as channel:
        stub = laser_pb2_grpc.LaserStub(channel)

        @settings(FUZZ, max_examples=12)
        @given(hostile_queries())
        def call(pair: tuple[str, str]) -> None:
            base, candidate = pair
            try:
                request = laser_pb2.VerifyRequest(original=base, candidate=candidate, target=target,
                                                  options=options)
                request.SerializeToString()
            except ValueError:  # protobuf refuses a string that is not UTF-8: nothing is sent
                return
            try:
                reply = stub.Verify(request, timeout=60)
            except grpc.RpcError as exc:
                assert exc.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), exc.details()
                assert (exc.details() or "").strip()
                answered[exc.code().name] = answered.get(exc.code().name, 0) + 1
                return
            assert reply.outcome.status
            answered["ok"] = answered.get("ok", 0) + 1

        call()
        assert sum(answered.values()) >= 10, answered  # (refused candidates come back as outcomes)
        # Bytes that are not UTF-8 where the contract says string: refused, and the server goes on.
        raw = channel.unary_unary("/laser.v1.Laser/Verify")
        bad = (laser_pb2.VerifyRequest(original="SELECT 1", target=target).SerializeToString()
               + b"\x12\x04\xff\xfe\x00\xc3")  # field 2 (candidate): 4 bytes of invalid UTF-8
        with pytest.raises(grpc.RpcError):
            raw(bad, timeout=30)
    assert _health(sidecar) == health_pb2.HealthCheckResponse.SERVING
