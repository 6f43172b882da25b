"""Small AST helpers shared by the rules: FROM-clause sources, column resolution, conjuncts."""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sidecar.catalog import Catalog, Column, Table


def base_sources(select: exp.Select) -> dict[str, exp.Table]:
    """Alias (or bare name) → base-table node, for the tables directly in ``select``'s FROM/JOINs."""
    sources: dict[str, exp.Table] = {}
    nodes: list[exp.Expression] = []
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


def conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    """Top-level AND operands of ``condition`` (parentheses removed)."""
    if condition is None:
        return []
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        return conjuncts(condition.left) + conjuncts(condition.right)
    return [condition]


def and_all(parts: list[exp.Expression]) -> exp.Expression | None:
    if not parts:
        return None
    return exp.and_(*parts, copy=False) if len(parts) > 1 else parts[0]


def is_plain_select(node: exp.Expression) -> bool:
    return isinstance(node, exp.Select) and not node.args.get("with_")


def rewrite_each_select(
    expression: exp.Expression, catalog: Catalog, rewrite: Callable[[exp.Select, Catalog], bool]
) -> exp.Expression | None:
    """Apply an in-place per-SELECT rewrite to every SELECT of a copy; the copy if any fired, else None."""
    tree = expression.copy()
    fired = False
    for select in list(tree.find_all(exp.Select)):
        fired = rewrite(select, catalog) or fired
    return tree if fired else None
