"""The guard refuses everything but one read-only statement, each case with its own message."""
from __future__ import annotations

import pytest

from sidecar.verify.guard import GuardError, guard

REFUSED = [
    ("DELETE FROM orders", "got DELETE"),
    ("UPDATE users SET name = 'x'", "got UPDATE"),
    ("INSERT INTO users (id) VALUES (1)", "got INSERT"),
    ("DROP TABLE users", "got DDL"),
    ("TRUNCATE users", "got DDL"),
    ("SELECT 1; DROP TABLE users", "exactly one statement is accepted; got 2"),
    ("SELEC * FROM users", "syntax error"),
    ("", "the query is empty"),
    ("   \n  ", "the query is empty"),
    ("-- only a comment", "the query is empty"),
    ("WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone",
     "data-modifying statements are not accepted, not even inside a WITH clause (DELETE)"),
    ("WITH x AS (UPDATE users SET name = name RETURNING id) SELECT * FROM x", "inside a WITH clause (UPDATE)"),
    ("SELECT * INTO copy_of_users FROM users", "SELECT ... INTO creates a table"),
    ("SELECT * FROM users FOR UPDATE", "locking clauses"),
    ("SELECT * FROM users FOR SHARE SKIP LOCKED", "locking clauses"),
    ("SELECT nextval('orders_id_seq')", "function nextval() writes or has side effects"),
    ("SELECT setval('orders_id_seq', 1)", "function setval()"),
    ("SELECT pg_advisory_lock(1)", "function pg_advisory_lock()"),
    ("SELECT pg_sleep(10)", "function pg_sleep()"),
    ("SELECT pg_terminate_backend(1)", "function pg_terminate_backend()"),
    ("SELECT set_config('transaction_read_only', 'off', true)", "function set_config()"),
    ("SELECT * FROM dblink('x', 'select 1') AS t(a int)", "function dblink()"),
    ("SELECT lo_unlink(1)", "function lo_unlink()"),
    ("SELECT (SELECT pg_catalog.nextval('s'))", "function nextval()"),
    ("BEGIN", "got transaction control"),
    ("COMMIT", "got transaction control"),
    ("SET statement_timeout = 0", "got SET"),
    ("COPY users TO STDOUT", "got COPY"),
    ("EXPLAIN ANALYZE DELETE FROM users", "got EXPLAIN"),
    ("CALL some_procedure()", "got CALL"),
    ("x" * (256 * 1024 + 1), "bytes; at most 262144 are accepted"),
]


@pytest.mark.parametrize(("sql", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_refused_with_its_reason(sql: str, message: str) -> None:
    with pytest.raises(GuardError) as refused:
        guard(sql)
    assert message in str(refused.value)


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "select * from users where id = 1;",
    "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT a FROM t UNION SELECT b FROM u ORDER BY 1",
    "SELECT count(*) FILTER (WHERE x > 1) OVER (PARTITION BY y) FROM t",
    "/* leading comment */ SELECT 1",
])
def test_read_only_queries_pass(sql: str) -> None:
    assert guard(sql) is not None
