"""Write a join order out as explicit JOINs where PostgreSQL cannot search all orders itself.

PostgreSQL 15 searches join orders exhaustively only within one join list. Explicit JOINs are folded
into one list up to ``join_collapse_limit`` (8) items; beyond it the written nesting is kept, so a
left-deep chain is planned as its first 8 items, then that block with the next ones. A FROM list of
``geqo_threshold`` (12) or more items goes to the genetic optimizer, a randomized search. Both can
start from a huge fact-table join. This rule rewrites such a FROM as a left-deep chain of inner JOINs
in a greedy order from the planner's own estimates: first the item with the fewest estimated rows
after its own filters (among those with an equality join predicate, when any has one), then always
the smallest item joined to the items so far by an equality predicate (the smallest unconnected
one only when none is).

Estimates come in through the catalog: ``catalog.scan_rows`` holds the EXPLAIN row estimate of each
item's probe ``SELECT * FROM <item> AS <alias> [WHERE <the conjuncts on that item alone>]`` (see
:func:`scan_probes` and :func:`with_scan_estimates`, which the rules backend calls with the planner). A base table
without a probe
estimate falls back to its ``reltuples``; a CTE reference or derived table without one refuses.

Constraints relied on (each checked; any failure leaves that SELECT unchanged, and the rule returns
None when no SELECT changed), for each SELECT of the statement, at any depth:

- The planner would not order it freely: its FROM has more than ``join_collapse_limit`` items and
  at least one explicit JOIN, or at least ``geqo_threshold`` items with ``geqo`` on. (A comma list
  of 9 to 11 items is already planned exhaustively and is left alone.)
- Every item is a base table (optionally schema-qualified), a CTE reference or a derived table,
  each with a distinct name: no LATERAL, function, VALUES, ONLY, TABLESAMPLE or parenthesized join.
- The joins are commas, ``[INNER] JOIN ... ON`` and ``CROSS JOIN``. ``LEFT [OUTER] JOIN ... ON``
  is accepted only after every other item and only without commas (so each LEFT JOIN's left side
  is everything before it): those stay last, in their written order, with their ON untouched, and
  only the items before them are reordered. No USING, NATURAL, RIGHT, FULL or other joins.
- No condition (WHERE or ON, subqueries in them included) calls a volatile function, or a function
  sqlglot does not know (it might be volatile): reordering changes how often and on which rows a
  condition runs.
- Name resolution: every column of a WHERE or ON conjunct outside its subqueries resolves to exactly
  one item: qualified by an item's alias (and among its columns, where they are known), or
  unqualified and among the known columns of exactly one item while the columns of every item are
  known (catalog columns of a base table; the output names of a CTE or derived table, column
  aliases applied). A column qualified by anything else (an outer query's alias) refuses. An ON
  conjunct with a subquery refuses (its names would be resolved in a wider scope elsewhere); a WHERE
  conjunct with a subquery stays in WHERE as written.
- Moving conjuncts: with inner joins a conjunct means the same in WHERE and in any ON above all the
  items it reads. A subquery-free conjunct over two or more reordered items moves into the ON of the
  JOIN that brings in the last of them; everything else (single-item filters, constants, conjuncts
  with subqueries or over a LEFT-joined item) stays in WHERE in written order. A WHERE conjunct over
  items before the LEFT JOINs may sit below them: a LEFT JOIN keeps each of those rows as it is.
- It fires only when the greedy order differs from the written one.

>>> import sqlglot
>>> from sidecar.catalog import Catalog, Column, Table
>>> def table(name, *columns, rows):
...     return Table("public", name, tuple(Column(c, "integer", False) for c in columns), row_estimate=rows)
>>> catalog = Catalog({"public.f": table("f", "a_id", "b_id", rows=10**6),
...                    "public.a": table("a", "id", "x", rows=100), "public.b": table("b", "id", rows=10)},
...                   join_collapse_limit=2)
>>> sql = "SELECT f.a_id FROM f JOIN a ON a.id = f.a_id JOIN b ON b.id = f.b_id WHERE a.x = 1"
>>> scan_probes(sql, catalog)
['SELECT * FROM f', 'SELECT * FROM a WHERE a.x = 1', 'SELECT * FROM b']
>>> tree = sqlglot.parse_one(sql, read="postgres")
>>> print(explicit_join_order(tree, catalog).sql(dialect="postgres"))
SELECT f.a_id FROM b JOIN f ON b.id = f.b_id JOIN a ON a.id = f.a_id WHERE a.x = 1
>>> estimated = Catalog(catalog.tables, {"SELECT * FROM a WHERE a.x = 1": 1.0}, join_collapse_limit=2)
>>> print(explicit_join_order(tree, estimated).sql(dialect="postgres"))
SELECT f.a_id FROM a JOIN f ON a.id = f.a_id JOIN b ON b.id = f.b_id WHERE a.x = 1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlglot import exp

from sidecar.catalog import Catalog, Table
from sidecar.rules._scope import and_all, catalog_table, conjuncts, parse

_JOIN_ARGS = frozenset({"this", "on", "kind", "side"})
_TABLE_ARGS = frozenset({"this", "db", "alias"})
_SUBQUERY_ARGS = frozenset({"this", "alias"})
_MAYBE_VOLATILE = (exp.Rand, exp.Uuid, exp.Anonymous)


@dataclass(frozen=True)
class _Item:
    alias: str
    node: exp.Expr
    """The FROM item as written: a Table (base table or CTE reference) or a Subquery."""
    position: int
    columns: frozenset[str] | None
    """Lower-case names its columns are referenced by; None when unknown."""
    table: Table | None
    """The catalog entry of a base table, for the reltuples fallback."""
    probe_with: exp.With | None
    """The CTEs a probe of this item needs (CTE references and derived tables)."""


@dataclass(frozen=True)
class _Conjunct:
    node: exp.Expr
    refs: frozenset[str] | None
    """Aliases of the items it reads; None for a conjunct with a subquery (it stays in WHERE)."""


@dataclass(frozen=True)
class _Analysis:
    select: exp.Select
    items: list[_Item]
    """The reordered items, in written order."""
    trailing: list[exp.Join]
    """LEFT JOINs that stay last, as written."""
    conjuncts: list[_Conjunct]
    """ON conjuncts in written order, then WHERE conjuncts."""
    edges: dict[str, set[str]]
    """Alias → aliases it is joined to by an equality conjunct."""
    probes: dict[str, str]
    """Alias → probe query text."""


def explicit_join_order(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    # Every SELECT is analysed (probe texts rendered) before any is changed, so the probe texts are
    # those scan_probes computes from the statement as written.
    analyses = [a for select in tree.find_all(exp.Select) if (a := _analyze(select, catalog)) is not None]
    fired = False
    for analysis in analyses:
        order = _greedy_order(analysis, catalog)
        if order is not None and [item.alias for item in order] != [item.alias for item in analysis.items]:
            _apply(analysis, order)
            fired = True
    return tree if fired else None


def scan_probes(sql: str, catalog: Catalog) -> list[str]:
    """The probe queries whose row estimates the rule needs for ``sql`` (empty when it cannot fire).

    >>> scan_probes("SELECT 1 FROM a JOIN b ON a.id = b.id", Catalog())
    []
    >>> scan_probes("not sql (", Catalog())
    []
    """
    tree = parse(sql)
    if tree is None:
        return []
    probes: dict[str, None] = {}
    for select in tree.find_all(exp.Select):
        analysis = _analyze(select, catalog)
        if analysis is not None:
            probes.update(dict.fromkeys(analysis.probes.values()))
    return list(probes)


def with_scan_estimates(sql: str, catalog: Catalog, rows: Callable[[str], float | None]) -> Catalog:
    """``catalog`` with the planner's row estimate of each probe this rule needs for ``sql`` (a probe
    the planner cannot estimate is left out: the rule then falls back to ``reltuples``).

    >>> from sidecar.catalog import Column, Table
    >>> t = lambda name: Table("public", name, (Column("id", "integer", False),), row_estimate=10)
    >>> small = Catalog({f"public.{n}": t(n) for n in "ab"}, join_collapse_limit=1)
    >>> with_scan_estimates("SELECT 1 FROM a JOIN b ON a.id = b.id", small, lambda probe: 3.0).scan_rows
    {'SELECT * FROM a': 3.0, 'SELECT * FROM b': 3.0}
    """
    estimates = dict(catalog.scan_rows)
    for probe in scan_probes(sql, catalog):
        estimate = rows(probe)
        if estimate is not None:
            estimates[probe] = estimate
    return replace(catalog, scan_rows=estimates)


def _analyze(select: exp.Select, catalog: Catalog) -> _Analysis | None:
    from_ = select.args.get("from_")
    if from_ is None or select.args.get("laterals"):
        return None
    joins: list[exp.Join] = list(select.args.get("joins") or [])
    count = 1 + len(joins)
    explicit = any(j.args.get("on") is not None or j.args.get("kind") or j.args.get("side") for j in joins)
    if not ((explicit and count > catalog.join_collapse_limit)
            or (catalog.geqo and count >= catalog.geqo_threshold)):
        return None

    nodes: list[exp.Expr] = [from_.this]
    trailing: list[exp.Join] = []
    conditions: list[exp.Expr] = []
    comma = False
    for join in joins:
        if any(value for key, value in join.args.items() if key not in _JOIN_ARGS):
            return None
        kind = (join.args.get("kind") or "").upper()
        side = (join.args.get("side") or "").upper()
        on = join.args.get("on")
        if side == "LEFT" and kind in ("", "OUTER") and on is not None:
            trailing.append(join)
            continue
        if trailing or side:
            return None
        if kind in ("", "INNER") and on is not None:
            conditions.append(on)
        elif kind == "" and on is None:
            comma = True
        elif kind != "CROSS" or on is not None:
            return None
        nodes.append(join.this)
    if trailing and comma:
        return None

    ctes = _visible_ctes(select)
    if ctes is None:
        return None
    by_name, probe_with = ctes
    items: list[_Item] = []
    for position, node in enumerate(nodes + [join.this for join in trailing]):
        item = _item(node, position, catalog, by_name, probe_with)
        if item is None or any(other.alias == item.alias for other in items):
            return None
        items.append(item)
    inner = {item.alias: item for item in items[: len(nodes)]}
    every = {item.alias: item for item in items}

    where = select.args.get("where")
    checked = conditions + [join.args["on"] for join in trailing] + ([where.this] if where is not None else [])
    if any(node.find(*_MAYBE_VOLATILE) for node in checked):
        return None
    pool: list[_Conjunct] = []
    for origin, parts in [("on", [c for on in conditions for c in conjuncts(on)]),
                          ("where", conjuncts(where.this if where is not None else None))]:
        for part in parts:
            if part.find(exp.Query):
                if origin == "on":
                    return None
                pool.append(_Conjunct(part, None))
                continue
            refs = _references(part, every)
            if refs is None:
                return None
            pool.append(_Conjunct(part, refs))

    edges: dict[str, set[str]] = {alias: set() for alias in inner}
    for conjunct in pool:
        node = conjunct.node
        if conjunct.refs is None or not isinstance(node, exp.EQ) or len(conjunct.refs) != 2:
            continue
        left, right = _references(node.this, every), _references(node.expression, every)
        if left and right and len(left) == len(right) == 1 and left | right <= inner.keys() and left != right:
            (a,), (b,) = left, right
            edges[a].add(b)
            edges[b].add(a)

    probes = {
        alias: _probe(item, [c.node for c in pool if c.refs == frozenset({alias})])
        for alias, item in inner.items()
    }
    return _Analysis(select, list(inner.values()), trailing, pool, edges, probes)


def _item(node: exp.Expr, position: int, catalog: Catalog, ctes: dict[str, exp.CTE],
          probe_with: exp.With | None) -> _Item | None:
    alias = node.alias_or_name.lower()
    if not alias:
        return None
    alias_node = node.args.get("alias")
    renamed = [column.name.lower() for column in alias_node.columns] if isinstance(alias_node, exp.TableAlias) else []
    if isinstance(node, exp.Table):
        if not isinstance(node.this, exp.Identifier) or any(
                value for key, value in node.args.items() if key not in _TABLE_ARGS):
            return None
        cte = None if node.args.get("db") else ctes.get(node.name.lower())
        if cte is not None:
            names = _output_names(cte.this)
            cte_alias = cte.args.get("alias")
            if names is not None and isinstance(cte_alias, exp.TableAlias):
                names = _renamed(names, [column.name.lower() for column in cte_alias.columns])
            return _Item(alias, node, position, _column_set(names, renamed), None, probe_with)
        table = catalog_table(node, catalog)
        names = [column.name.lower() for column in table.columns] if table is not None else None
        return _Item(alias, node, position, _column_set(names, renamed), table, None)
    if isinstance(node, exp.Subquery) and isinstance(alias_node, exp.TableAlias):
        if any(value for key, value in node.args.items() if key not in _SUBQUERY_ARGS):
            return None
        if not isinstance(node.this, (exp.Select, exp.SetOperation)):
            return None
        return _Item(alias, node, position, _column_set(_output_names(node.this), renamed), None, probe_with)
    return None


def _renamed(names: list[str], renamed: list[str]) -> list[str] | None:
    """Column names after a column alias list (which renames the first columns)."""
    if len(renamed) > len(names):
        return None
    return renamed + names[len(renamed):]


def _column_set(names: list[str] | None, renamed: list[str]) -> frozenset[str] | None:
    if names is None:
        return None
    final = _renamed(names, renamed)
    return frozenset(final) if final is not None else None


def _output_names(query: exp.Expr) -> list[str] | None:
    """The output column names of a CTE or derived table body, when every one is evident."""
    if isinstance(query, exp.Subquery):
        return _output_names(query.this)
    if isinstance(query, exp.SetOperation):
        return _output_names(query.this)
    if not isinstance(query, exp.Select):
        return None
    names: list[str] = []
    for expression in query.expressions:
        if isinstance(expression, exp.Alias):
            names.append(expression.alias.lower())
        elif isinstance(expression, exp.Column) and not isinstance(expression.this, exp.Star):
            names.append(expression.name.lower())
        else:
            return None
    return names


def _visible_ctes(select: exp.Select) -> tuple[dict[str, exp.CTE], exp.With | None] | None:
    """The CTEs a FROM item of ``select`` may name, and a WITH clause defining them all for probes.

    None when two visible CTEs share a name (which one a name means is then not worth working out).
    """
    levels: list[list[exp.CTE]] = []
    recursive = False
    own = select.args.get("with_")
    if isinstance(own, exp.With):
        levels.append(list(own.expressions))
        recursive = recursive or bool(own.args.get("recursive"))
    node: exp.Expr | None = select
    while node is not None and node.parent is not None:
        parent = node.parent
        if isinstance(parent, exp.With):
            ctes = list(parent.expressions)
            index = next(i for i, cte in enumerate(ctes) if cte is node)
            levels.append(ctes[: index + 1] if parent.args.get("recursive") else ctes[:index])
            recursive = recursive or bool(parent.args.get("recursive"))
            node = parent.parent  # the query owning this WITH; its other CTEs are not visible here
            continue
        with_ = parent.args.get("with_")
        if isinstance(with_, exp.With) and node.arg_key != "with_":
            levels.append(list(with_.expressions))
            recursive = recursive or bool(with_.args.get("recursive"))
        node = parent
    by_name: dict[str, exp.CTE] = {}
    ordered: list[exp.CTE] = []
    for level in reversed(levels):  # outermost first: inner CTEs may read outer ones
        for cte in level:
            name = cte.alias_or_name.lower()
            if name in by_name:
                return None
            by_name[name] = cte
            ordered.append(cte)
    if not ordered:
        return by_name, None
    return by_name, exp.With(expressions=[cte.copy() for cte in ordered], recursive=recursive or None)


def _references(node: exp.Expr, items: dict[str, _Item]) -> frozenset[str] | None:
    """Aliases of the items ``node``'s columns belong to; None when one does not resolve to exactly one."""
    refs: set[str] = set()
    for column in node.find_all(exp.Column):
        if isinstance(column.this, exp.Star) or column.args.get("db") or column.args.get("catalog"):
            return None
        name = column.name.lower()
        if column.table:
            item = items.get(column.table.lower())
            if item is None or (item.columns is not None and name not in item.columns):
                return None
            refs.add(item.alias)
            continue
        if any(item.columns is None for item in items.values()):
            return None
        owners = [item.alias for item in items.values() if item.columns is not None and name in item.columns]
        if len(owners) != 1:
            return None
        refs.add(owners[0])
    return frozenset(refs)


def _probe(item: _Item, filters: list[exp.Expr]) -> str:
    probe = exp.select("*").from_(item.node.copy(), copy=False)
    condition = and_all([f.copy() for f in filters])
    if condition is not None:
        probe.set("where", exp.Where(this=condition))
    if item.probe_with is not None:
        probe.set("with_", item.probe_with.copy())
    return probe.sql(dialect="postgres", comments=False)


def _greedy_order(analysis: _Analysis, catalog: Catalog) -> list[_Item] | None:
    estimates: dict[str, float] = {}
    for item in analysis.items:
        rows = catalog.scan_rows.get(analysis.probes[item.alias])
        if rows is None:
            if item.table is None:
                return None
            rows = float(item.table.row_estimate)
        estimates[item.alias] = rows

    def size(item: _Item) -> tuple[float, int]:
        return estimates[item.alias], item.position

    remaining = list(analysis.items)
    # An item joined to nothing by an equality would start with a cross product: start elsewhere.
    joinable = [item for item in remaining if analysis.edges[item.alias]]
    order = [min(joinable or remaining, key=size)]
    remaining.remove(order[0])
    joined = {order[0].alias}
    while remaining:
        connected = [item for item in remaining if analysis.edges[item.alias] & joined]
        chosen = min(connected or remaining, key=size)
        order.append(chosen)
        remaining.remove(chosen)
        joined.add(chosen.alias)
    return order


def _apply(analysis: _Analysis, order: list[_Item]) -> None:
    inner = {item.alias for item in analysis.items}
    movable = [c for c in analysis.conjuncts if c.refs is not None and len(c.refs) >= 2 and c.refs <= inner]
    placed: set[int] = set()
    joined = {order[0].alias}
    joins: list[exp.Join] = []
    for item in order[1:]:
        joined.add(item.alias)
        on: list[exp.Expr] = []
        for conjunct in movable:
            assert conjunct.refs is not None
            if id(conjunct) not in placed and item.alias in conjunct.refs and conjunct.refs <= joined:
                placed.add(id(conjunct))
                on.append(conjunct.node)
        condition = and_all(on)
        joins.append(exp.Join(this=item.node, on=condition) if condition is not None
                     else exp.Join(this=item.node, kind="CROSS"))
    remaining = [c.node for c in analysis.conjuncts if id(c) not in placed]
    select = analysis.select
    select.set("from_", exp.From(this=order[0].node))
    select.set("joins", joins + analysis.trailing)
    condition = and_all(remaining)
    select.set("where", exp.Where(this=condition) if condition is not None else None)
