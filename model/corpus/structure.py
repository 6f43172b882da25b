"""Structural distance between two SQL statements (LASER Eq. 3) and the normalized form used as
the corpus's identity of a query.

Eq. 3 is ``TED(AST(q), AST(q')) / max(|AST(q)|, |AST(q')|)``, with the tree edit distance taken
"using SQLGlot" (the paper). sqlglot's ``diff`` computes an edit script between two ASTs
(ChangeDistiller matching: inserts, removes, moves and updates); its length is the edit distance
used here, clipped to the larger tree's size so that Δ stays in [0, 1].

Why not an exact tree edit distance: on the real ASTs of a TPC-DS corpus (`laser bench-ted`,
BENCHMARKS.md) APTED takes about 300 ms a pair and zss over a second, this about 6.5 ms; its
values run about 0.1 below the exact ones but rank variants nearly the same way (Spearman 0.92),
and the search only ranks with Δ.
"""
from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.diff import Keep, diff
from sqlglot.errors import SqlglotError


def parse(sql: str) -> exp.Expr:
    """One PostgreSQL statement as a sqlglot tree (raises ValueError when sqlglot cannot parse it)."""
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except SqlglotError as exc:
        raise ValueError(f"cannot parse: {exc}") from None


def normalized(sql: str | exp.Expr) -> str:
    """The statement as sqlglot prints it, without comments: equal for texts that differ only in
    layout, case of keywords or comments. The key of the result cache and of deduplication.

    >>> normalized("select  a from T -- note") == normalized("SELECT a\\nFROM T")
    True
    """
    tree = parse(sql) if isinstance(sql, str) else sql
    return tree.sql(dialect="postgres", comments=False)


def size(tree: exp.Expr) -> int:
    """|AST(q)|: the number of nodes.

    >>> size(parse("SELECT a FROM t"))
    6
    """
    return sum(1 for _ in tree.walk())


def distance(a: exp.Expr, b: exp.Expr) -> float:
    """Δ(a, b) of Eq. 3, in [0, 1]; 0 for identical trees.

    >>> distance(parse("SELECT a FROM t WHERE x = 1"), parse("SELECT a FROM t WHERE x = 1"))
    0.0
    >>> d = distance(parse("SELECT a FROM t WHERE x = 1"), parse("SELECT a FROM t WHERE x + 0 = 1"))
    >>> 0 < d < 0.5
    True
    """
    largest = max(size(a), size(b))
    edits = sum(1 for edit in diff(a, b, delta_only=True) if not isinstance(edit, Keep))
    return min(edits, largest) / largest
