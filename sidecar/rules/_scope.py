"""Small AST helpers shared by the rules: FROM-clause sources, column resolution, conjuncts."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sidecar.catalog import Catalog, Column, Table


def parse(sql: str) -> exp.Expr | None:
    """One PostgreSQL statement as a sqlglot tree; None when sqlglot cannot parse it."""
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return None


def base_sources(select: exp.Select) -> dict[str, exp.Table]:
    """Alias (or bare name) → base-table node, for the tables directly in ``select``'s FROM/JOINs."""
    sources: dict[str, exp.Table] = {}
    nodes: list[exp.Expr] = []
    from_ = select.args.get("from_")
    if from_ is not None:
        nodes.append(from_.this)
    nodes.extend(join.this for join in select.args.get("joins") or [])
    for node in nodes:
        if isinstance(node, exp.Table) and node.name:
            sources[node.alias_or_name.lower()] = node
    return sources


def source_names(select: exp.Select) -> set[str]:
    """Aliases of every FROM/JOIN item of ``select``, derived tables included."""
    names: set[str] = set()
    from_ = select.args.get("from_")
    items = [from_.this] if from_ is not None else []
    items.extend(join.this for join in select.args.get("joins") or [])
    for item in items:
        if item.alias_or_name:
            names.add(item.alias_or_name.lower())
    return names


def catalog_table(node: exp.Table, catalog: Catalog) -> Table | None:
    name = ".".join(part.name for part in node.parts)
    return catalog.table(name)


def cte_columns(node: exp.Table) -> Table | None:
    """The CTE an unqualified FROM item names, as a column list (types unknown, all nullable), when
    it is in scope, not recursive, and every output column has a name; else None."""
    if node.args.get("db") or node.args.get("catalog") or not node.name:
        return None
    name = node.name.lower()
    scope: exp.Expr | None = node
    while scope is not None:
        with_ = scope.args.get("with_") if isinstance(scope, exp.Query) else None
        if isinstance(with_, exp.With):
            for cte in with_.expressions:
                if cte.alias_or_name.lower() != name:
                    continue
                if with_.args.get("recursive"):
                    return None
                body = cte.this
                while isinstance(body, exp.SetOperation):
                    body = body.this
                if not isinstance(body, exp.Select):
                    return None
                names = [projection.alias_or_name.lower() for projection in body.expressions]
                aliased = cte.args.get("alias")
                if aliased is not None and aliased.columns:
                    names = [column.name.lower() for column in aliased.columns]
                if not names or any(not n or n == "*" for n in names) or len(set(names)) != len(names):
                    return None
                return Table("", name, tuple(Column(n, "", True) for n in names))
        scope = scope.parent
    return None


def resolve_column(
    column: exp.Column, select: exp.Select, catalog: Catalog
) -> tuple[str, Table, Column] | None:
    """(source alias, table, column) for a column of one of ``select``'s base tables, else None."""
    sources = base_sources(select)
    if column.table:
        node = sources.get(column.table.lower())
        if node is None:
            return None
        table = catalog_table(node, catalog)
        if table is None:
            return None
        col = table.column(column.name)
        return (column.table.lower(), table, col) if col is not None else None
    if len(source_names(select)) != len(sources):
        return None  # an unqualified name could belong to a derived table we cannot see into
    found: list[tuple[str, Table, Column]] = []
    for alias, node in sources.items():
        table = catalog_table(node, catalog)
        if table is None:
            return None
        col = table.column(column.name)
        if col is not None:
            found.append((alias, table, col))
    return found[0] if len(found) == 1 else None


def fresh_name(base: str, taken: set[str], *, bare: bool = False) -> str:
    """The first of ``base`` (only when ``bare``), ``base_1`` (``base_2`` when ``bare``), ``base_2``,
    ... that is not in ``taken``; it is added to ``taken``."""
    numbered = (f"{base}_{index}" for index in itertools.count(2 if bare else 1))
    name = next(n for n in itertools.chain([base] if bare else [], numbered) if n not in taken)
    taken.add(name)
    return name


def inside(node: exp.Expr, ancestor: exp.Expr) -> bool:
    """Is ``ancestor`` a proper ancestor of ``node``?"""
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def conjuncts(condition: exp.Expr | None) -> list[exp.Expr]:
    """Top-level AND operands of ``condition`` (parentheses removed)."""
    if condition is None:
        return []
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        return conjuncts(condition.left) + conjuncts(condition.right)
    return [condition]


def and_all(parts: list[exp.Expr]) -> exp.Expr | None:
    if not parts:
        return None
    return exp.and_(*parts, copy=False) if len(parts) > 1 else parts[0]


def deterministic(node: exp.Expr) -> bool:
    """No random function and no function sqlglot does not know (a user function or
    ``clock_timestamp()`` may be volatile): the same value however often it is evaluated."""
    return node.find(exp.Rand, exp.Anonymous) is None


def is_plain_select(node: exp.Expr) -> bool:
    return isinstance(node, exp.Select) and not node.args.get("with_")


def rewrite_each_select(
    expression: exp.Expr, catalog: Catalog, rewrite: Callable[[exp.Select, Catalog], bool]
) -> exp.Expr | None:
    """Apply an in-place per-SELECT rewrite to every SELECT of a copy; the copy if any fired, else None."""
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        fired = rewrite(select, catalog) or fired
    return tree if fired else None


def rewrite_each_select_with_names(
    expression: exp.Expr, catalog: Catalog,
    rewrite: Callable[[exp.Select, Catalog, set[str], set[str]], bool],
) -> exp.Expr | None:
    """:func:`rewrite_each_select` for rules that add names: ``rewrite`` also gets the statement's
    CTE names and every identifier it uses (lowercased; a rule adds the names it takes)."""
    tree = expression.copy()
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    taken = {ident.name.lower() for ident in tree.find_all(exp.Identifier)}
    fired = False
    for select in list(tree.find_all(exp.Select)):
        fired = rewrite(select, catalog, cte_names, taken) or fired
    return tree if fired else None


def nullable_sides(select: exp.Select) -> set[str] | None:
    """Aliases of ``select``'s FROM items that an outer join may fill with NULLs (None: unknown)."""
    from_ = select.args.get("from_")
    if from_ is None:
        return None
    seen = [from_.this.alias_or_name.lower()]
    nullable: set[str] = set()
    for join in select.args.get("joins") or []:
        alias = join.this.alias_or_name.lower()
        side = (join.side or "").upper()
        if side not in ("", "LEFT", "RIGHT", "FULL"):
            return None
        if side in ("RIGHT", "FULL"):
            nullable.update(seen)
        if side in ("LEFT", "FULL"):
            nullable.add(alias)
        seen.append(alias)
    return nullable


def not_null_source(
    column: exp.Column, select: exp.Select, catalog: Catalog, cte_names: set[str]
) -> exp.Table | None:
    """The base-table node ``column`` belongs to when it is declared NOT NULL and never NULL-extended."""
    resolved = resolve_column(column, select, catalog)
    nullable = nullable_sides(select)
    if resolved is None or nullable is None:
        return None
    alias, _, col = resolved
    node = base_sources(select).get(alias)
    if node is None or col.nullable or alias in nullable:
        return None
    if not node.args.get("db") and node.name.lower() in cte_names:
        return None  # a CTE named like a catalog table: its columns carry no catalog facts
    if catalog_table(node, catalog) is None:
        return None
    return node
