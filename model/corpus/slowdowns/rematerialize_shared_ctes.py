"""A CTE referenced several times and marked ``NOT MATERIALIZED`` → the marker dropped, so PostgreSQL
materializes it again: one full computation scanned by every reference, no filter pushed in.

Why it is slower (where it is): each reference then reads the whole stored result, estimated as if
unfiltered, instead of its own inlined copy with its own filters pushed into the body's scans
(TPC-DS q11 at SF 0.1: 0.6-1.5 s inlined, 16 s or the 30 s cap materialized). Where the references
read most of the body, materializing is the faster form; the corpus keeps a pair only when the
slow side measures slower. Undone by the rules-backend rule ``inline_shared_ctes``.

Why it is equivalent: a non-recursive CTE without volatile functions gives the same rows whether it
is computed once or once per reference within one statement's snapshot.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = "WITH t AS NOT MATERIALIZED (SELECT k FROM f) SELECT a.k FROM t AS a JOIN t AS b ON a.k = b.k + 1"
>>> print(rematerialize_shared_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
WITH t AS (SELECT k FROM f) SELECT a.k FROM t AS a JOIN t AS b ON a.k = b.k + 1
>>> once = "WITH t AS NOT MATERIALIZED (SELECT k FROM f) SELECT k FROM t"
>>> rematerialize_shared_ctes(sqlglot.parse_one(once, read="postgres"), Catalog()) is None
True
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from sidecar.catalog import Catalog


def rematerialize_shared_ctes(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    fired = False
    for with_ in tree.find_all(exp.With):
        scope = with_.parent
        if with_.args.get("recursive") or scope is None:
            continue
        for cte in with_.expressions:
            if cte.args.get("materialized") is not False or not deterministic(cte.this):
                continue
            name = cte.alias_or_name.lower()
            references = [t for t in scope.find_all(exp.Table)
                          if t.name.lower() == name and not t.args.get("db") and not t.args.get("catalog")]
            if len(references) < 2:
                continue
            cte.set("materialized", None)
            fired = True
    return tree if fired else None
