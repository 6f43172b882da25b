"""A CTE referenced several times → ``NOT MATERIALIZED``, so that each reference gets its own copy of
the body with its own filters pushed in.

Since PostgreSQL 12 a CTE referenced twice or more is materialized: its body is computed in full
once and every reference scans the stored rows, estimated as if no filter reached them. When the
references filter differently (TPC-DS q39: two months of one inventory aggregate; q11 and q74: one
year and one channel of a per-customer total per reference), inlined copies that each read only
their own slice are faster than one full computation; when the references read most of the body,
the single computation wins (q31, q75). No syntax tells which, so this rule only offers the inlined
form: the search keeps the materialized parent as a candidate too, and execution decides.

Constraints relied on:

- A non-recursive WITH of a SELECT statement (a data-modifying CTE is refused by the guard before
  any rule runs); the CTE is not marked ``MATERIALIZED`` or ``NOT MATERIALIZED`` already, and no
  other CTE in the statement has its name.
- Its body calls no random function and no function sqlglot does not know (a user function or
  ``clock_timestamp()`` may be volatile): evaluated once per
  reference instead of once, such a body could give each reference different rows. A deterministic
  body gives the same rows however often it runs within one statement's snapshot.
- It is referenced at least twice, every reference as a FROM or JOIN item outside any subquery
  expression (which PostgreSQL may rerun per outer row) and outside other CTE bodies, so inlining
  computes the body at most once per reference.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("WITH t AS (SELECT k, sum(v) AS s FROM f GROUP BY k) "
...        "SELECT a.k FROM t AS a JOIN t AS b ON a.k = b.k + 1 WHERE a.k = 3")
>>> print(inline_shared_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
... # doctest: +NORMALIZE_WHITESPACE
WITH t AS NOT MATERIALIZED (SELECT k, SUM(v) AS s FROM f GROUP BY k) SELECT a.k FROM t AS a JOIN t AS b
ON a.k = b.k + 1 WHERE a.k = 3
>>> once = "WITH t AS (SELECT k FROM f) SELECT k FROM t WHERE k = 3"
>>> inline_shared_ctes(sqlglot.parse_one(once, read="postgres"), Catalog()) is None
True
"""

from __future__ import annotations

from collections import Counter

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import deterministic
from sidecar.rules.declines import decline


def inline_shared_ctes(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    names = Counter(cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE))
    fired = False
    for with_ in tree.find_all(exp.With):
        scope = with_.parent
        if with_.args.get("recursive") or not isinstance(scope, exp.Query):
            continue
        for cte in with_.expressions:
            name = cte.alias_or_name.lower()
            if cte.args.get("materialized") is not None or names[name] != 1 or not isinstance(cte.this, exp.Query):
                continue
            if not deterministic(cte.this):
                continue
            references = [t for t in scope.find_all(exp.Table)
                          if t.name.lower() == name and not t.args.get("db") and not t.args.get("catalog")]
            if len(references) < 2:
                continue
            if not all(_evaluated_once(t, scope) for t in references):
                decline(f"CTE {cte.alias_or_name} is read inside a subquery expression, a LATERAL item or "
                        "another CTE, which may run once per row: inlining could recompute it each time")
                continue
            cte.set("materialized", False)
            fired = True
    return tree if fired else None


def _evaluated_once(reference: exp.Table, scope: exp.Query) -> bool:
    """A FROM/JOIN item reached from `scope` through derived tables and set operations only (not a
    subquery expression, a LATERAL item or another CTE's body)."""
    if not isinstance(reference.parent, (exp.From, exp.Join)):
        return False
    node: exp.Expr = reference
    while node is not scope:
        parent = node.parent
        if parent is None or isinstance(parent, exp.CTE):
            return False
        nested_query = isinstance(node, exp.Query) and not isinstance(node, exp.Subquery)
        if nested_query and parent is not scope and not isinstance(parent, (exp.Subquery, exp.SetOperation)):
            return False
        if isinstance(node, exp.Subquery) and not isinstance(parent, (exp.From, exp.Join, exp.SetOperation)):
            return False
        node = parent
    return True
