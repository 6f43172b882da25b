"""Guard: admit exactly one read-only statement, refuse everything else with a specific reason.

Parses with PostgreSQL's own grammar (pglast, in the sidecar process; never inside a backend), once:
the admitted :class:`Statement` carries its parse tree and its normalized text, and every later step
(EXPLAIN, execution, perturbed instances, parameter binding) works from those.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.parser import scan

MAX_QUERY_BYTES = 256 * 1024
MAX_NESTING = 200
"""The deepest parse tree accepted (in nodes): later steps (deparsing, rewriting rules) recurse over it,
and real queries stay far below (the deepest TPC-DS query is under 40)."""

# Functions that write, signal, sleep, reach outside the database or change session state.
# Matched on the last name part, lower-cased; prefixes end with "_" or "*".
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "nextval", "setval", "currval", "lastval",
        "pg_sleep", "pg_sleep_for", "pg_sleep_until",
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_start_backup",
        "pg_stop_backup", "pg_backup_start", "pg_backup_stop",
        "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
        "pg_stat_statements_reset",
        "set_config", "pg_notify", "txid_current", "pg_current_xact_id",
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
        "pg_file_write", "pg_file_unlink", "pg_file_rename",
        "query_to_xml", "query_to_xml_and_xmlschema", "cursor_to_xml", "table_to_xml",
        "pg_import_system_collations", "pg_replication_origin_create",
        "pg_create_logical_replication_slot", "pg_create_physical_replication_slot",
        "pg_drop_replication_slot", "pg_logical_emit_message",
    }
)
_FORBIDDEN_PREFIXES = ("pg_advisory_", "pg_try_advisory_", "dblink", "lo_", "pg_logical_slot_")


class GuardError(ValueError):
    """The statement is not a single read-only query; the message says exactly why."""


@dataclass(frozen=True)
class Statement:
    """One admitted read-only statement: its text, normalized, and its parse tree."""

    text: str
    """The statement as written, without a trailing terminator (`;`) or trailing comments, so
    that it can be composed into EXPLAIN, PREPARE or a cursor; comments inside and in front of it
    (which may carry planner hints) are kept."""
    tree: ast.SelectStmt
    """Its parse tree (PostgreSQL's grammar)."""

    @property
    def tables(self) -> tuple[tuple[str | None, str], ...]:
        """(schema or None, name) of every table it reads, CTE names excluded, sorted.

        >>> guard("WITH t AS (SELECT * FROM orders) SELECT * FROM t JOIN public.users u ON true").tables
        ((None, 'orders'), ('public', 'users'))
        """
        ctes = {cte.ctename for node in _walk(self.tree) if isinstance(node, ast.WithClause)
                for cte in node.ctes or ()}
        found: dict[tuple[str | None, str], None] = {}
        for node in _walk(self.tree):
            if isinstance(node, ast.RangeVar) and node.relname and not (node.schemaname is None
                                                                       and node.relname in ctes):
                found[(node.schemaname, node.relname)] = None
        return tuple(sorted(found, key=lambda name: (name[0] or "", name[1])))


def guard(sql: str) -> Statement:
    """The admitted statement if `sql` is one read-only query, else raise GuardError.

    >>> guard("SELECT 1 ;  -- the answer").text
    'SELECT 1'
    >>> guard("/*+ SeqScan(t) */ SELECT a FROM t -- trailing").text
    '/*+ SeqScan(t) */ SELECT a FROM t'
    >>> guard("DELETE FROM orders")
    Traceback (most recent call last):
    ...
    sidecar.verify.guard.GuardError: only read-only queries are accepted (SELECT, WITH ... SELECT, VALUES); got DELETE
    >>> guard("SELECT 1; DROP TABLE users")
    Traceback (most recent call last):
    ...
    sidecar.verify.guard.GuardError: exactly one statement is accepted; got 2
    """
    if sql is None:
        raise GuardError("the query is NULL")
    try:
        size = len(sql.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise GuardError(f"the query is not valid UTF-8 (an unpaired surrogate at character {exc.start})") from None
    if size > MAX_QUERY_BYTES:
        raise GuardError(f"the query is {size} bytes; at most {MAX_QUERY_BYTES} are accepted")
    if "\x00" in sql:
        # The parser would stop at it and see only the text before it.
        raise GuardError(f"the query contains a NUL character (at character {sql.index(chr(0))}); "
                         "PostgreSQL accepts none in a query")
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        raise GuardError(f"syntax error: {exc}") from None
    except RecursionError:
        raise GuardError(f"the query nests too deeply; at most {MAX_NESTING} levels are accepted") from None
    if not statements:
        raise GuardError("the query is empty")
    if len(statements) != 1:
        raise GuardError(f"exactly one statement is accepted; got {len(statements)}")
    top = statements[0].stmt
    if not isinstance(top, ast.SelectStmt):
        assert top is not None
        raise GuardError(
            "only read-only queries are accepted (SELECT, WITH ... SELECT, VALUES); "
            f"got {_statement_kind(top)}"
        )
    for node, depth in _walk_depths(top):
        if depth > MAX_NESTING:
            raise GuardError(f"the query nests too deeply; at most {MAX_NESTING} levels are accepted")
        _check_node(node)
    return Statement(_trimmed(sql), top)


def _trimmed(sql: str) -> str:
    """The text from its start up to the last token that is neither a comment nor a terminator.

    A trailing `;` or `-- comment` would break any composition that puts text after the statement.
    """
    tokens = [t for t in scan(sql) if t.name not in ("SQL_COMMENT", "C_COMMENT", "ASCII_59")]
    return sql[: tokens[-1].end + 1].strip() if tokens else sql.strip()


def _statement_kind(node: ast.Node) -> str:
    name = type(node).__name__
    kinds = {
        "InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE",
        "MergeStmt": "MERGE", "TransactionStmt": "transaction control",
        "VariableSetStmt": "SET", "CopyStmt": "COPY", "ExplainStmt": "EXPLAIN",
        "CallStmt": "CALL", "DoStmt": "DO", "LockStmt": "LOCK",
        "CreateTableAsStmt": "CREATE TABLE AS", "PrepareStmt": "PREPARE",
        "ExecuteStmt": "EXECUTE", "VacuumStmt": "VACUUM/ANALYZE",
        "CreateStmt": "DDL (CREATE TABLE)", "DropStmt": "DDL (DROP)", "TruncateStmt": "DDL (TRUNCATE)",
        "AlterTableStmt": "DDL (ALTER)", "IndexStmt": "DDL (CREATE INDEX)", "ViewStmt": "DDL (CREATE VIEW)",
        "CreateFunctionStmt": "DDL (CREATE FUNCTION)", "GrantStmt": "GRANT/REVOKE", "GrantRoleStmt": "GRANT/REVOKE",
    }
    if name in kinds:
        return kinds[name]
    if name.startswith(("Create", "Alter", "Drop", "Grant", "Rename", "Comment", "Truncate")):
        return f"DDL ({name.removesuffix('Stmt')})"
    return name.removesuffix("Stmt")


def _walk(node: Any) -> Iterator[ast.Node]:
    """Every AST node below and including `node`."""
    for found, _ in _walk_depths(node):
        yield found


def _walk_depths(node: Any) -> Iterator[tuple[ast.Node, int]]:
    """Every AST node below and including `node`, with its depth (1 for `node`), parents first;
    iterative, so that no nesting exhausts Python's stack."""
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, ast.Node):
            yield item, depth
            stack.extend((getattr(item, attr), depth + 1) for attr in reversed(list(item)))
        elif isinstance(item, (tuple, list)):
            stack.extend((child, depth) for child in reversed(item))


def _check_node(node: ast.Node) -> None:
    if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
        raise GuardError(
            f"data-modifying statements are not accepted, not even inside a WITH clause "
            f"({_statement_kind(node)})"
        )
    if isinstance(node, ast.SelectStmt):
        if node.intoClause is not None:
            raise GuardError("SELECT ... INTO creates a table; only read-only queries are accepted")
        if node.lockingClause:
            raise GuardError(
                "locking clauses (FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE) "
                "are not accepted"
            )
    if isinstance(node, ast.FuncCall):
        name = str(node.funcname[-1].sval if node.funcname else "").lower()
        if name in _FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES):
            raise GuardError(f"function {name}() writes or has side effects; it is not accepted")
