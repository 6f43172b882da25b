"""LASER Table 1's statistics of a query set: templates, tokens, predicates, subqueries and joins
per query, printed next to the paper's SQL-MCTS row."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

PAPER_SQL_MCTS = {"queries": 11_675, "tokens": 334.47, "predicates": 11.24, "subqueries": 1.89}
"""LASER Table 1, the SQL-MCTS row (3,000 seeds on TPC-DS)."""

_PREDICATES = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.Between, exp.In, exp.Like, exp.ILike,
               exp.Is, exp.Exists)


@dataclass(frozen=True)
class QueryShape:
    tokens: int
    predicates: int
    subqueries: int
    joins: int


def shape(sql: str) -> QueryShape:
    """Counts for one statement: sqlglot tokens, comparison/IN/LIKE/IS/EXISTS predicates, nested
    SELECTs (CTE bodies and derived tables included) and joined FROM items (comma joins included).

    >>> shape("SELECT a FROM t JOIN u ON u.id = t.id WHERE t.x IN (SELECT y FROM v) AND t.z > 2")
    QueryShape(tokens=31, predicates=3, subqueries=1, joins=1)
    """
    tree = sqlglot.parse_one(sql, read="postgres")
    selects = sum(1 for _ in tree.find_all(exp.Select))
    return QueryShape(
        tokens=len(sqlglot.tokenize(sql, read="postgres")),
        predicates=sum(1 for _ in tree.find_all(*_PREDICATES)),
        subqueries=max(selects - 1 - sum(1 for _ in tree.find_all(exp.SetOperation)), 0),
        joins=sum(1 for _ in tree.find_all(exp.Join)),
    )


def table1(queries: Sequence[str], templates: int) -> dict[str, float]:
    """The means over ``queries`` (those sqlglot can parse)."""
    shapes = []
    for sql in queries:
        try:
            shapes.append(shape(sql))
        except sqlglot.errors.SqlglotError:
            continue
    n = max(len(shapes), 1)
    return {"queries": len(shapes), "templates": templates,
            "tokens": round(sum(s.tokens for s in shapes) / n, 2),
            "predicates": round(sum(s.predicates for s in shapes) / n, 2),
            "subqueries": round(sum(s.subqueries for s in shapes) / n, 2),
            "joins": round(sum(s.joins for s in shapes) / n, 2)}


def render(rows: dict[str, dict[str, float]]) -> str:
    """A small table: one row per named query set, and the paper's row.

    >>> print(render({"seeds": {"queries": 2, "templates": 2, "tokens": 10.0, "predicates": 1.5,
    ...                         "subqueries": 0.5, "joins": 1.0}}))
    set                    queries  templates   tokens  predicates  subqueries  joins
    seeds                        2          2     10.0         1.5         0.5    1.0
    LASER SQL-MCTS (paper)   11675          -   334.47       11.24        1.89      -
    """
    header = (f"{'set':<22} {'queries':>8} {'templates':>10} {'tokens':>8} {'predicates':>11} "
              f"{'subqueries':>11} {'joins':>6}")
    lines = [header]
    for name, row in rows.items():
        lines.append(f"{name:<22} {row['queries']:>8} {row['templates']:>10} {row['tokens']:>8} "
                     f"{row['predicates']:>11} {row['subqueries']:>11} {row['joins']:>6}")
    paper = PAPER_SQL_MCTS
    lines.append(f"{'LASER SQL-MCTS (paper)':<22} {paper['queries']:>8} {'-':>10} {paper['tokens']:>8} "
                 f"{paper['predicates']:>11} {paper['subqueries']:>11} {'-':>6}")
    return "\n".join(lines)
