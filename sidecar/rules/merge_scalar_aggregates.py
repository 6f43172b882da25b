"""Compute sibling single-row aggregate subqueries over the same FROM in one pass, as one CTE.

TPC-DS Q09, Q28, Q88 and Q90 read the same fact table (or the same join) once per bucket: each
bucket is an uncorrelated ``(SELECT count(*) FROM <from> WHERE <bucket filter>)`` or a derived
table of such aggregates. PostgreSQL has no common-subexpression elimination across subqueries, so
it scans the FROM once per subquery. One CTE computes every bucket with ``FILTER (WHERE ...)``
aggregates in a single scan; each subquery then reads its column from the CTE, which PostgreSQL
materializes once (``AS MATERIALIZED``; a CTE referenced twice is materialized anyway).

Constraints relied on (each checked; a subquery failing one is left alone, and the rule fires only
when at least two subqueries of one group merge):

- The statement is a SELECT or a set operation. Each merged subquery is a parenthesized plain
  ``SELECT <items> FROM <tables> [WHERE <conjuncts>]``: no GROUP BY, HAVING, DISTINCT, ORDER BY,
  LIMIT/OFFSET, window, WITH, set operation, locking clause or nested subquery. Without GROUP BY
  such an aggregate query yields exactly one row whatever the data, and so does the CTE: replacing
  the subquery's body by ``SELECT <column> FROM <cte>`` is exact wherever the subquery sits (scalar
  context, IN, or a derived table in FROM). Subqueries that are set-operation branches or LATERAL
  are left alone.
- Every item is an expression over ``count``, ``sum``, ``avg``, ``min`` and ``max`` aggregates
  (``count(*)`` and ``count(DISTINCT x)`` included), every column inside an aggregate, without
  FILTER, WITHIN GROUP, an ORDER BY inside the call, or nested aggregates. Only a derived table may
  have several items. Where the subquery's column name is visible (a derived table's column, or a
  bare subquery as an outer select item), it is kept: the item's alias, else the aggregate's name
  (PostgreSQL's own choice for ``count(*)``); an unnamed arithmetic item there is refused.
- The subquery is uncorrelated: its FROM items are base tables (no CTE of the statement, no derived
  table, no column-alias list) known to the catalog, joined by comma, CROSS, INNER or outer joins
  with ON (no USING, no NATURAL), and every column, qualified or not, resolves through the catalog
  to exactly one of those tables (a name found in none of them would be an outer reference).
- Deterministic: no volatile function (random, nextval, clock_timestamp, gen_random_uuid, ...) and
  no function sqlglot does not know (it could be a volatile user function). Since the CTE also
  computes subqueries the original would never have run (an untaken CASE branch), expressions that
  can raise on ordinary data are refused: division or modulo by anything but a non-zero number,
  casts of columns. (Integer overflow inside an aggregate argument is not guarded against.)
- Merged subqueries share the same SELECT scope and FROM/JOIN part, compared structurally (SQL
  rendering after folding unquoted identifiers; aliases included). Quoted mixed-case identifiers
  are refused (the catalog lookups are case-insensitive).
- Conjuncts present in every WHERE of a group are common; the rest of subquery *i* is ``D_i``. The
  CTE is ``SELECT agg_i FILTER (WHERE D_i) ... FROM <from> WHERE <common> AND (D_1 OR ... OR D_n)``.
  A row is aggregated for *i* iff ``common AND D_i`` is true, as in the original WHERE (FILTER,
  like WHERE, drops rows where the condition is false or NULL). A subquery with no ``D_i`` gets no
  FILTER and the OR is dropped. Aggregates over no rows keep their values (``count`` 0, others
  NULL); arithmetic around an aggregate stays around its FILTERed form. Identical columns are
  computed once.
- The CTE has a fresh name (``laser_aggregates``, ``laser_aggregates_2``, ...) and goes first in the
  statement's WITH list, so every existing CTE and the main query can see it; it reads only base
  tables.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> orders = Table("public", "orders", (Column("quantity", "integer", False), Column("amount", "numeric", False)))
>>> sql = ("SELECT (SELECT count(*) FROM orders WHERE quantity = 1) AS one, "
...        "(SELECT avg(amount) FROM orders WHERE quantity = 2) AS two")
>>> tree = sqlglot.parse_one(sql, read="postgres")
>>> print(merge_scalar_aggregates(tree, Catalog({"public.orders": orders})).sql(dialect="postgres"))
WITH laser_aggregates AS MATERIALIZED (SELECT COUNT(*) FILTER(WHERE quantity = 1) AS agg_1, AVG(amount) FILTER(WHERE
quantity = 2) AS agg_2 FROM orders WHERE quantity = 1 OR quantity = 2) SELECT (SELECT agg_1 FROM laser_aggregates) AS
one, (SELECT agg_2 FROM laser_aggregates) AS two
>>> merge_scalar_aggregates(sqlglot.parse_one("SELECT (SELECT count(*) FROM orders)", read="postgres"),
...                         Catalog({"public.orders": orders})) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from sidecar.catalog import Catalog
from sidecar.rules._scope import (
    and_all,
    base_sources,
    catalog_table,
    conjuncts,
    fresh_name,
    source_names,
)

CTE_NAME = "laser_aggregates"
_AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
_BODY_ARGS = frozenset({"expressions", "from_", "joins", "where"})
_TABLE_ARGS = frozenset({"this", "db", "catalog", "alias"})
_JOIN_ARGS = frozenset({"this", "on", "kind", "side"})
_JOIN_KINDS = frozenset({"", "INNER", "CROSS", "OUTER"})
_VOLATILE = frozenset({"random", "setseed", "nextval", "setval", "currval", "lastval", "clock_timestamp",
                       "statement_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v4",
                       "txid_current", "pg_sleep"})
# Nodes that may not occur inside a merged subquery at all.
_REFUSED_NODES = (exp.Subquery, exp.Exists, exp.Filter, exp.WithinGroup, exp.Window, exp.Order,
                  exp.Ordered, exp.Anonymous, exp.Rand, exp.Uuid, exp.Star)


@dataclass
class _Candidate:
    subquery: exp.Subquery
    from_key: str
    """SQL of the FROM/JOIN part after identifier folding: the grouping key."""
    from_: exp.From
    joins: list[exp.Join]
    values: list[exp.Expr]
    """The select items without their aliases (identifiers folded)."""
    names: list[exp.Identifier | None]
    """Output name each replacement item must carry (None: the name is invisible)."""
    conjuncts: list[exp.Expr]


def merge_scalar_aggregates(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    if not isinstance(tree, (exp.Select, exp.SetOperation)) or tree.args.get("into"):
        return None
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}

    groups: dict[tuple[int, str], list[_Candidate]] = {}
    for subquery in tree.find_all(exp.Subquery, bfs=False):
        scope = subquery.parent_select
        if scope is None:
            continue
        candidate = _candidate(subquery, catalog, cte_names)
        if candidate is not None:
            groups.setdefault((id(scope), candidate.from_key), []).append(candidate)
    merged = [group for group in groups.values() if len(group) >= 2]
    if not merged:
        return None

    taken = cte_names | {table.name.lower() for table in tree.find_all(exp.Table)}
    ctes = [_merge(group, fresh_name(CTE_NAME, taken, bare=True)) for group in merged]
    with_ = tree.args.get("with_")
    if with_ is None:
        tree.set("with_", exp.With(expressions=ctes))
    else:
        with_.set("expressions", ctes + list(with_.expressions))
    return tree


def _candidate(subquery: exp.Subquery, catalog: Catalog, cte_names: set[str]) -> _Candidate | None:
    if any(value for key, value in subquery.args.items() if key not in ("this", "alias")):
        return None
    if isinstance(subquery.parent, (exp.SetOperation, exp.Lateral)):
        return None
    original = subquery.this
    if not isinstance(original, exp.Select) or original.args.get("from_") is None:
        return None
    if any(value for key, value in original.args.items() if key not in _BODY_ARGS):
        return None
    derived = isinstance(subquery.parent, (exp.From, exp.Join))
    if not original.expressions or (len(original.expressions) > 1 and not derived):
        return None
    if any(ident.quoted and ident.name != ident.name.lower() for ident in original.find_all(exp.Identifier)):
        return None

    body = normalize_identifiers(original.copy(), dialect="postgres")
    if not isinstance(body, exp.Select) or not _self_contained(body, catalog, cte_names):
        return None
    if any(_refused(node) for node in body.walk()):
        return None
    values = [item.this if isinstance(item, exp.Alias) else item for item in body.expressions]
    if not all(_aggregate_expression(value) for value in values):
        return None

    names: list[exp.Identifier | None] = []
    visible = _visible_names(subquery, len(values))
    for item, must_name in zip(original.expressions, visible, strict=True):
        name = _output_name(item)
        if name is None and must_name:
            return None
        names.append(name if isinstance(item, exp.Alias) or must_name else None)

    from_ = body.args["from_"]
    joins = list(body.args.get("joins") or [])
    where = body.args.get("where")
    return _Candidate(
        subquery=subquery,
        from_key=" ".join(node.sql(dialect="postgres") for node in [from_, *joins]),
        from_=from_,
        joins=joins,
        values=values,
        names=names,
        conjuncts=conjuncts(where.this if where is not None else None),
    )


def _self_contained(body: exp.Select, catalog: Catalog, cte_names: set[str]) -> bool:
    """Every FROM item is a known base table and every column resolves to exactly one of them."""
    items = [body.args["from_"].this] + [join.this for join in body.args.get("joins") or []]
    for join in body.args.get("joins") or []:
        if any(value for key, value in join.args.items() if key not in _JOIN_ARGS):
            return False
        if (join.kind or "").upper() not in _JOIN_KINDS:
            return False
    tables = {}
    for item in items:
        if not isinstance(item, exp.Table) or not item.name:
            return False
        if any(value for key, value in item.args.items() if key not in _TABLE_ARGS):
            return False
        alias = item.args.get("alias")
        if alias is not None and alias.columns:
            return False
        if not item.args.get("db") and item.name.lower() in cte_names:
            return False  # a CTE of the statement, not the catalog's table
        table = catalog_table(item, catalog)
        if table is None:
            return False
        tables[item.alias_or_name.lower()] = table
    if len(tables) != len(items) or len(source_names(body)) != len(base_sources(body)):
        return False

    for column in body.find_all(exp.Column):
        if column.args.get("db") or column.args.get("catalog") or isinstance(column.this, exp.Star):
            return False
        if column.table:
            owner = tables.get(column.table.lower())
            if owner is None or owner.column(column.name) is None:
                return False
        elif sum(table.column(column.name) is not None for table in tables.values()) != 1:
            return False
    return True


def _refused(node: exp.Expr) -> bool:
    if isinstance(node, _REFUSED_NODES) and not (isinstance(node, exp.Star) and isinstance(node.parent, exp.Count)):
        return True
    if isinstance(node, exp.Select) and node.parent is not None:
        return True
    if isinstance(node, exp.Func) and node.sql_name().lower() in _VOLATILE:
        return True
    if isinstance(node, (exp.Div, exp.Mod, exp.IntDiv)):
        divisor = node.expression
        while isinstance(divisor, (exp.Paren, exp.Neg)):
            divisor = divisor.this
        return not (isinstance(divisor, exp.Literal) and not divisor.is_string and float(divisor.this) != 0)
    if isinstance(node, (exp.Cast, exp.TryCast)):
        return node.this.find(exp.Column) is not None
    return False


def _aggregate_expression(value: exp.Expr) -> bool:
    """An expression over count/sum/avg/min/max whose columns all sit inside an aggregate."""
    if value.find(*_AGGREGATES) is None:
        return False
    for node in value.walk():
        if isinstance(node, exp.AggFunc) and not isinstance(node, _AGGREGATES):
            return False
        if isinstance(node, _AGGREGATES) and node.find_ancestor(exp.AggFunc) is not None:
            return False
        if isinstance(node, exp.Column) and node.find_ancestor(*_AGGREGATES) is None:
            return False
    return True


def _visible_names(subquery: exp.Subquery, count: int) -> list[bool]:
    """For each select item: does its column name show outside the subquery?"""
    if isinstance(subquery.parent, (exp.From, exp.Join)):
        alias = subquery.args.get("alias")
        renamed = len(alias.columns) if alias is not None else 0
        return [index >= renamed for index in range(count)]
    node: exp.Expr = subquery
    while isinstance(node.parent, exp.Paren):
        node = node.parent
    return [isinstance(node.parent, exp.Select) and node.arg_key == "expressions"] * count


def _output_name(item: exp.Expr) -> exp.Identifier | None:
    if isinstance(item, exp.Alias):
        identifier = item.args.get("alias")
        return identifier.copy() if isinstance(identifier, exp.Identifier) else None
    if isinstance(item, _AGGREGATES):
        return exp.to_identifier(item.key)
    return None


def _with_filter(value: exp.Expr, condition: exp.Expr) -> exp.Expr:
    def add_filter(node: exp.Expr) -> exp.Expr:
        if isinstance(node, _AGGREGATES):
            return exp.Filter(this=node.copy(), expression=exp.Where(this=condition.copy()))
        return node

    return value.copy().transform(add_filter, copy=False)


def _merge(group: list[_Candidate], name: str) -> exp.CTE:
    """Build the group's CTE and point every subquery of the group at it."""
    def key(node: exp.Expr) -> str:
        return node.sql(dialect="postgres")

    shared = set.intersection(*({key(c) for c in candidate.conjuncts} for candidate in group))
    common: dict[str, exp.Expr] = {}
    for conjunct in group[0].conjuncts:
        if key(conjunct) in shared:
            common.setdefault(key(conjunct), conjunct)

    conditions: dict[str, exp.Expr] = {}
    unfiltered = False
    columns: dict[str, str] = {}
    projections: list[exp.Expr] = []
    for candidate in group:
        condition = and_all([c.copy() for c in candidate.conjuncts if key(c) not in shared])
        if condition is None:
            unfiltered = True
        else:
            conditions.setdefault(key(condition), condition)
        items: list[exp.Expr] = []
        for value, output in zip(candidate.values, candidate.names, strict=True):
            computed = value.copy() if condition is None else _with_filter(value, condition)
            signature = key(computed)
            if signature not in columns:
                columns[signature] = f"agg_{len(columns) + 1}"
                projections.append(exp.alias_(computed, columns[signature]))
            reference = exp.column(columns[signature])
            items.append(exp.alias_(reference, output) if output is not None else reference)
        candidate.subquery.set("this", exp.select(*items).from_(name))

    where_parts: list[exp.Expr] = [conjunct.copy() for conjunct in common.values()]
    if not unfiltered:
        terms = [exp.paren(c) if isinstance(c, exp.Connector) and len(conditions) > 1 else c
                 for c in conditions.values()]
        where_parts.append(exp.or_(*terms, copy=False) if len(terms) > 1 else terms[0])
    first = group[0]
    body = exp.Select(
        expressions=projections,
        from_=first.from_.copy(),
        joins=[join.copy() for join in first.joins] or None,
    )
    where = and_all(where_parts)
    if where is not None:
        body.set("where", exp.Where(this=where))
    return exp.CTE(this=body, alias=exp.TableAlias(this=exp.to_identifier(name)), materialized=True)
