"""laser_db.logsamples: parameter values of real executions, read back from the server log.

The fixture strings below are records captured verbatim from the dev cluster's log (PostgreSQL 15,
stderr, log_line_prefix '%m [%p] ') after `SET log_min_duration_statement = 0`, with statements
sent by libpq's simple protocol (PQexec) and by psycopg with server-side binding. Continuation
lines start with the TAB that the server inserts after every line break of a message; it is
written as \\t here so it stays visible. The last test produces its records on a real server.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any

import psycopg
import pytest
from laser_db.logsamples import samples, split_records

# --- Real records (dev cluster log, 2026-11-22) -------------------------------------------------

SIMPLE = (
    "2026-11-22 03:31:20.554 UTC [27013] LOG:  duration: 0.185 ms  statement: SET log_min_duration_statement = 0\n"
    "2026-11-22 03:31:20.555 UTC [27013] LOG:  duration: 0.259 ms  statement: select date '1995-03-15' + "
    "interval '3 month', -5 as x, 1.5e3 y, 'a''b' z, true, null, 10 limit 3\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 1.210 ms  statement: select 1 as lsmark\n"
    "\t  where 'it''s' <> E'x\\ny'\n"
    "\t\tand -2.5 < 3\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.045 ms  statement: select '2020-01-01'::date, "
    "array['a','b'], 'x'::text as lsmark2\n"
    "2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.023 ms  statement: select 1 as lsmark8; select 2 as lsmark9\n"
    "2026-11-22 03:33:15.077 UTC [27380] LOG:  duration: 0.695 ms  statement: select E'tab\\there \\'q\\' "
    "\\x41\\101\\u00e9' as lsm10, $$dol'lar$$, $t$x$$y$t$, B'0101', X'1f', - 5, 3 - 2\n"
    "2026-11-22 03:33:15.077 UTC [27380] LOG:  duration: 0.036 ms  statement: SELECT 'up' AS LSM13 WHERE TRUE AND NULL IS NULL\n"
    "2026-11-22 03:33:15.077 UTC [27380] LOG:  duration: 0.052 ms  statement: select n'nat' as lsm14, .5, 5., 1e-3, -1.5E+2\n"
)

EXTENDED = (
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.221 ms  parse <unnamed>: select $1::int + 1 as lsmark3, $2::text, $3::text\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.017 ms  bind <unnamed>: select $1::int + 1 as lsmark3, $2::text, $3::text\n"
    "2026-11-22 03:31:20.557 UTC [27013] DETAIL:  parameters: $1 = '42', $2 = NULL, $3 = 'it''s'\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.003 ms  execute <unnamed>: select $1::int + 1 as lsmark3, $2::text, $3::text\n"
    "2026-11-22 03:31:20.557 UTC [27013] DETAIL:  parameters: $1 = '42', $2 = NULL, $3 = 'it''s'\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.008 ms  parse <unnamed>: select $1::text as lsmark4\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.004 ms  bind <unnamed>: select $1::text as lsmark4\n"
    "2026-11-22 03:31:20.557 UTC [27013] DETAIL:  parameters: $1 = 'multi\n"
    "\tline ''q'''\n"
    "2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.002 ms  execute <unnamed>: select $1::text as lsmark4\n"
    "2026-11-22 03:31:20.557 UTC [27013] DETAIL:  parameters: $1 = 'multi\n"
    "\tline ''q'''\n"
    "2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.020 ms  statement: SET log_parameter_max_length = 5\n"
    "2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.008 ms  parse <unnamed>: select $1::text as lsmark7, $2::int\n"
    "2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.005 ms  bind <unnamed>: select $1::text as lsmark7, $2::int\n"
    "2026-11-22 03:31:20.558 UTC [27013] DETAIL:  parameters: $1 = 'abcde...', $2 = '12'\n"
    "2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.001 ms  execute <unnamed>: select $1::text as lsmark7, $2::int\n"
    "2026-11-22 03:31:20.558 UTC [27013] DETAIL:  parameters: $1 = 'abcde...', $2 = '12'\n"
    "2026-11-22 03:31:20.558 UTC [27013] LOG:  duration: 0.012 ms  statement: SET log_parameter_max_length = -1\n"
)

# Four literal statements, then a named prepared statement (psycopg prepare=True) run four times.
REPEATED = (
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 1.667 ms  statement: select relname from pg_class where relpages > 1 and relname <> 'x' limit 5\n"
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.213 ms  statement: select relname from pg_class where relpages > '1' and relname <> 'x' limit 5\n"
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.038 ms  statement: select relname from pg_class where relpages > 2 and relname <> 'y' limit 5\n"
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.018 ms  statement: select relname from pg_class where relpages > 1 and relname <> 'x' limit 5\n"
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.088 ms  parse _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.045 ms  bind _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.515 UTC [28388] DETAIL:  parameters: $1 = '1', $2 = 'a'\n"
    "2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.092 ms  execute _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.515 UTC [28388] DETAIL:  parameters: $1 = '1', $2 = 'a'\n"
    "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.029 ms  bind _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.516 UTC [28388] DETAIL:  parameters: $1 = '2', $2 = 'b'\n"
    "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.048 ms  execute _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.516 UTC [28388] DETAIL:  parameters: $1 = '2', $2 = 'b'\n"
    "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.014 ms  bind _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.516 UTC [28388] DETAIL:  parameters: $1 = '1', $2 = 'a'\n"
    "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.035 ms  execute _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.516 UTC [28388] DETAIL:  parameters: $1 = '1', $2 = 'a'\n"
    "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.012 ms  bind _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.516 UTC [28388] DETAIL:  parameters: $1 = '3', $2 = NULL\n"
    "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.027 ms  execute _pg3_0: select relname from pg_class where relpages > $1 and relname is distinct from $2\n"
    "2026-11-22 03:35:35.516 UTC [28388] DETAIL:  parameters: $1 = '3', $2 = NULL\n"
)

# With `log_statement = 'all'` instead: statements are logged before they run, without a duration.
LOG_STATEMENT = (
    "2026-11-22 03:33:15.078 UTC [27380] LOG:  statement: select 'viaall' as lsm15\n"
    "2026-11-22 03:33:15.078 UTC [27380] LOG:  execute <unnamed>: select $1::text as lsm16\n"
    "2026-11-22 03:33:15.078 UTC [27380] DETAIL:  parameters: $1 = 'p'\n"
    "2026-11-22 03:33:15.078 UTC [27380] LOG:  statement: select 1/0 as lsm17\n"
    "2026-11-22 03:33:15.078 UTC [27380] ERROR:  division by zero\n"
    "2026-11-22 03:33:15.078 UTC [27380] STATEMENT:  select 1/0 as lsm17\n"
)

# pg_stat_statements' text for the statements above, as the dev cluster stored it.
DATE_QUERY = "select date $1 + interval $2, $3 as x, $4 y, $5 z, $6, $7, $8 limit $9"
MULTILINE_QUERY = "select $1 as lsmark\n  where $2 <> $3\n\tand $4 < $5"
REPEATED_LITERAL = "select relname from pg_class where relpages > $1 and relname <> $2 limit $3"
REPEATED_PREPARED = "select relname from pg_class where relpages > $1 and relname is distinct from $2"


# --- Literal statements (simple protocol) -------------------------------------------------------

def test_literal_statement_with_typed_string_negative_number_true_null() -> None:
    assert samples(DATE_QUERY, SIMPLE) == [
        {1: "1995-03-15", 2: "3 month", 3: "-5", 4: "1.5e3", 5: "a'b", 6: "true", 7: None, 8: "10", 9: "3"},
    ]


def test_multiline_statement_with_quotes_and_escape_string() -> None:
    # The TAB the server adds to continuation lines is not part of the statement (nor of E'x\ny').
    assert samples(MULTILINE_QUERY, SIMPLE) == [{1: "1", 2: "it's", 3: "x\ny", 4: "-2.5", 5: "3"}]


def test_casts_and_arrays() -> None:
    assert samples("select $1::date, array[$2,$3], $4::text as lsmark2", SIMPLE) == [
        {1: "2020-01-01", 2: "a", 3: "b", 4: "x"},
    ]


def test_other_quotings_and_number_forms() -> None:
    query = "select $1 as lsm10, $2, $3, $4, $5, $6, $7 - $8"
    assert samples(query, SIMPLE) == [
        {1: "tab\there 'q' AA\u00e9", 2: "dol'lar", 3: "x$$y", 4: "b0101", 5: "x1f", 6: "-5", 7: "3", 8: "2"},
    ]
    assert samples("select n$1 as lsm14, $2, $3, $4, $5", SIMPLE) == [
        {1: "nat", 2: ".5", 3: "5.", 4: "1e-3", 5: "-1.5E+2"},
    ]


def test_keywords_compare_case_insensitively_and_literals_keep_their_case() -> None:
    assert samples("select $1 as lsm13 where $2 and $3 is null", SIMPLE) == [{1: "up", 2: "TRUE", 3: None}]
    assert samples("SELECT $1 AS LSM13 WHERE $2 AND $3 IS NULL", SIMPLE.replace("'up'", "'UP'")) == [
        {1: "UP", 2: "TRUE", 3: None},
    ]


def test_one_statement_of_a_multi_statement_string() -> None:
    assert samples("select $1 as lsmark9", SIMPLE) == [{1: "2"}]
    assert samples("select $1 as lsmark8", SIMPLE) == [{1: "1"}]


def test_non_matching_statements_are_ignored() -> None:
    assert samples("select date $1 + interval $2, $3 as x", SIMPLE) == []           # a prefix only
    assert samples("select $1 as other", SIMPLE + EXTENDED) == []
    assert samples("select $1 + interval $2", SIMPLE) == []
    # A `$n` stands for a constant, never for a column or an expression.
    assert samples("select $1 as lsmark\n  where $2 <> $3\n\tand $4 < x", SIMPLE) == []
    assert samples("select $1 as lsmark where $2 <> $3 and $4", SIMPLE) == []
    assert samples("select $1 as lsmark where $2 <> $3 and $4 < $5 limit $6", SIMPLE) == []


def test_a_repeated_placeholder_needs_the_same_value() -> None:
    log = ("2026-11-22 03:35:35.515 UTC [28388] LOG:  duration: 0.1 ms  statement: select 1 where 2 = 2\n"
           "2026-11-22 03:35:35.516 UTC [28388] LOG:  duration: 0.1 ms  statement: select 1 where 2 = '3'\n")
    assert samples("select 1 where $1 = $1", log) == [{1: "2"}]


# --- Extended protocol: execute records with a DETAIL --------------------------------------------

def test_execute_with_null_and_quotes_and_a_constant_numbered_after_the_parameters() -> None:
    # pg_stat_statements numbers the constant `1` after the statement's own three parameters.
    query = "select $1::int + $4 as lsmark3, $2::text, $3::text"
    assert samples(query, EXTENDED) == [{1: "42", 2: None, 3: "it's", 4: "1"}]
    assert samples("select $1::int + 1 as lsmark3, $2::text, $3::text", EXTENDED) == [
        {1: "42", 2: None, 3: "it's"},
    ]


def test_execute_with_a_multiline_parameter_value() -> None:
    assert samples("select $1::text as lsmark4", EXTENDED) == [{1: "multi\nline 'q'"}]


def test_truncated_parameter_values_are_skipped() -> None:
    assert samples("select $1::text as lsmark7, $2::int", EXTENDED) == []


def test_named_prepared_statement_distinct_most_recent_first() -> None:
    assert samples(REPEATED_PREPARED, REPEATED) == [{1: "3", 2: None}, {1: "1", 2: "a"}, {1: "2", 2: "b"}]
    assert samples(REPEATED_PREPARED, REPEATED, limit=2) == [{1: "3", 2: None}, {1: "1", 2: "a"}]
    assert samples(REPEATED_PREPARED, REPEATED, limit=0) == []


def test_literal_statements_distinct_most_recent_first() -> None:
    # '1' and 1 are the same value for the verifier, which quotes every value.
    assert samples(REPEATED_LITERAL, REPEATED) == [{1: "1", 2: "x", 3: "5"}, {1: "2", 2: "y", 3: "5"}]
    assert samples(REPEATED_LITERAL, REPEATED, limit=1) == [{1: "1", 2: "x", 3: "5"}]


def test_execute_without_its_detail_gives_nothing() -> None:
    lines = REPEATED.splitlines(keepends=True)
    no_detail = "".join(line for line in lines if "DETAIL" not in line)
    assert samples(REPEATED_PREPARED, no_detail) == []


def test_log_statement_records_and_failed_statements() -> None:
    assert samples("select $1 as lsm15", LOG_STATEMENT) == [{1: "viaall"}]
    assert samples("select $1::text as lsm16", LOG_STATEMENT) == [{1: "p"}]
    assert samples("select $1/$2 as lsm17", LOG_STATEMENT) == []          # it raised an ERROR


# --- The log text itself ----------------------------------------------------------------------

def test_first_record_cut_at_the_start_of_the_text() -> None:
    start = SIMPLE.index("\t  where 'it''s'")
    assert samples(MULTILINE_QUERY, SIMPLE[start:]) == []            # only its continuation lines
    assert split_records(SIMPLE[start:])[0].startswith("2026-11-22 03:31:20.557 UTC [27013] LOG:  duration: 0.045")
    # Cut inside the prefix: the statement itself is whole, so it counts.
    assert samples(MULTILINE_QUERY, SIMPLE[SIMPLE.index("20.557 UTC"):]) == [
        {1: "1", 2: "it's", 3: "x\ny", 4: "-2.5", 5: "3"},
    ]
    # Cut inside the statement: nothing that looks like a record is left of it.
    cut = SIMPLE[SIMPLE.index("'1995-03-15'"):]
    assert samples(DATE_QUERY, cut) == []


def test_split_records_joins_continuation_lines() -> None:
    records = split_records(EXTENDED)
    assert records[7] == ("2026-11-22 03:31:20.557 UTC [27013] DETAIL:  parameters: $1 = 'multi\n"
                          "line ''q'''")
    assert len(records) == 17


@pytest.mark.parametrize("garbage", [
    "", "\n\n\t\t", "\x00\xff LOG:  duration: x ms  statement: '", "LOG:  execute : $1",
    "P LOG:  duration: 1 ms  execute <unnamed>: select $1\nP DETAIL:  parameters: $1 = 'x",
    "P LOG:  duration: 1 ms  execute <unnamed>: select $1\nP DETAIL:  parameters: $2 = 'x'",
    "P LOG:  duration: 1 ms  statement: select E'\\777\\uD800'",
    "P LOG:  duration: 1 ms  statement: select $$unterminated /* ' \" ; ;",
    "P LOG:  duration: 1 ms  statement: select " + "'" * 100_001,
    "P LOG:  duration: 1 ms  statement: select " + "x" * (2 << 20),
])
def test_garbage_never_raises(garbage: str) -> None:
    for query in ("select $1", "select E$1", "", "$1", "select $99999999999999999999"):
        assert samples(query, garbage) == []


def test_no_placeholders() -> None:
    # pg_stat_statements (15) keeps utility statements as written: no `$n`, one empty set.
    assert samples("SET log_min_duration_statement = 0", SIMPLE) == [{}]
    assert samples("SET log_min_duration_statement = $1", SIMPLE) == [{1: "0"}]
    assert samples("select relname from pg_class", SIMPLE) == []


# --- A real server ---------------------------------------------------------------------------

def _log_tail(path: str, start: int, marker: str, timeout_s: float = 10.0) -> str:
    """The log from byte `start` on, once `marker` was written."""
    deadline = time.monotonic() + timeout_s
    while True:
        with open(path, "rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
        if marker in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_samples_from_a_real_server_log(cluster, admin_dsn: str) -> None:
    # A temporary table with a fresh name: its own queryid, so pg_stat_statements keeps this text.
    table = f"ls_{uuid.uuid4().hex[:12]}"
    log_file = str(cluster.log_file)
    start = os.path.getsize(log_file)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SET log_min_duration_statement = 0")
        conn.execute(f"CREATE TEMP TABLE {table} (a int, b text, c date)")
        literal = (f"select count(*) from {table}\n"
                   f"  where a > -5 and b <> 'it''s' and c < date '2024-02-29' and true")
        result = conn.pgconn.exec_(literal.encode())                    # simple protocol
        assert result.status == psycopg.pq.ExecStatus.TUPLES_OK, result.error_message
        conn.execute(f"select a from {table} where a = %s and b is distinct from %s and b <> %s",
                     (42, None, "O'Brien"))                             # server-side binding
        conn.execute(f"select a from {table} where a = %s and b is distinct from %s and b <> %s",
                     (7, "x", "y"))
        rows = conn.execute(
            "select case when query like '%%count(*)%%' then 'literal' else 'bound' end, query"
            " from pg_stat_statements where query like %s and query like 'select%%'",
            (f"%{table}%",)).fetchall()
        conn.execute("RESET log_min_duration_statement")
    queries: dict[str, Any] = dict(rows)
    assert len(rows) == 2 and set(queries) == {"literal", "bound"}, rows
    assert queries["literal"] == (f"select count(*) from {table}\n"
                                  f"  where a > $1 and b <> $2 and c < date $3 and $4")
    tail = _log_tail(log_file, start, "$3 = 'y'")
    assert samples(queries["literal"], tail) == [{1: "-5", 2: "it's", 3: "2024-02-29", 4: "true"}]
    assert samples(queries["bound"], tail) == [{1: "7", 2: "x", 3: "y"}, {1: "42", 2: None, 3: "O'Brien"}]
