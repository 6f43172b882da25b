"""What a query reads, from its parse tree: table references, join links, literal and parameter comparisons.

Pure functions over pglast trees. The perturbed-instance check uses them to know which tables to
copy, how rows of those tables meet (so samples keep join partners), which values sit on the
query's boundaries, and to point a query at the copies (`redirect`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pglast
from pglast import ast, enums, stream, visitors

_N = TypeVar("_N", bound=ast.Node)

TableName = tuple[str | None, str]
"""(schema or None, relation) as written in the query."""


@dataclass(frozen=True)
class ColumnMention:
    """A column as written: `qualifier` is the alias or table name in front of it, if any."""

    qualifier: str | None
    column: str


@dataclass(frozen=True)
class Comparison:
    """`column <op> value` in a predicate; `value` is a literal's SQL text or a parameter `$n`."""

    column: ColumnMention
    operator: str
    value: str
    parameter: int | None = None


@dataclass(frozen=True)
class QueryRelations:
    """Everything `relations()` learns from one statement."""

    tables: tuple[TableName, ...]
    aliases: dict[str, TableName]
    """Alias (or bare table name) -> table, for aliases that mean one table throughout the query."""
    links: tuple[tuple[ColumnMention, ColumnMention], ...]
    """Column pairs compared with `=` (join conditions, correlations)."""
    comparisons: tuple[Comparison, ...]
    filters: tuple[tuple[str, str], ...] = ()
    """(alias, predicate SQL): the conjunction of a scope's WHERE/ON conditions on that alias alone."""
    loose_filters: tuple[tuple[tuple[str, ...], str], ...] = ()
    """(columns, predicate SQL): conditions on unqualified columns in a scope over several tables;
    which table they filter is decided with the catalog (the one table that has those columns)."""


def relations(statement: ast.Node) -> QueryRelations:
    """Read tables, aliases, equality links and literal comparisons from a parsed statement.

    >>> r = relations(pglast.parse_sql(
    ...     "WITH recent AS (SELECT * FROM orders WHERE created_at >= DATE '2024-01-01') "
    ...     "SELECT u.id FROM users u JOIN recent r ON r.user_id = u.id "
    ...     "WHERE u.country IN ('DE', 'FR') AND u.id = $1")[0].stmt)
    >>> r.tables
    ((None, 'users'), (None, 'orders'))
    >>> r.aliases['u'], 'r' in r.aliases
    ((None, 'users'), False)
    >>> [(a.qualifier, a.column, b.qualifier, b.column) for a, b in r.links]
    [('r', 'user_id', 'u', 'id')]
    >>> [(c.column.column, c.operator, c.value, c.parameter) for c in r.comparisons]
    [('country', '=', "'DE'", None), ('country', '=', "'FR'", None), ('id', '=', '$1', 1), ('created_at', '>=',
    "CAST('2024-01-01' AS date)", None)]
    """
    ctes = _cte_names(statement)
    tables: list[TableName] = []
    alias_targets: dict[str, set[TableName]] = {}
    for node in _nodes(statement, ast.RangeVar):
        if node.relname is None or (node.schemaname is None and node.relname in ctes):
            continue
        name: TableName = (node.schemaname, node.relname)
        if name not in tables:
            tables.append(name)
        alias_targets.setdefault(_alias(node), set()).add(name)
    aliases = {a: next(iter(t)) for a, t in alias_targets.items() if len(t) == 1}

    links: list[tuple[ColumnMention, ColumnMention]] = []
    comparisons: list[Comparison] = []
    for expr in _nodes(statement, ast.A_Expr):
        _read_predicate(expr, links, comparisons)
    for sublink in _nodes(statement, ast.SubLink):
        link = _in_link(sublink)
        if link is not None:
            links.append(link)
    through = _cte_lineage(statement, ctes, set(alias_targets))
    if through:
        links = [(through.get(a, a), through.get(b, b)) for a, b in links]
    selects = list(_nodes(statement, ast.SelectStmt))
    filters = [f for select in selects for f in _local_filters(select)]
    loose = [f for select in selects for f in _loose_filters(select)]
    return QueryRelations(tuple(tables), aliases, tuple(links), tuple(comparisons), tuple(dict.fromkeys(filters)),
                          tuple(dict.fromkeys(loose)))


def _loose_filters(select: ast.SelectStmt) -> list[tuple[tuple[str, ...], str]]:
    """Conditions on unqualified columns only, in a SELECT over several plain tables.

    >>> _loose_filters(pglast.parse_sql("SELECT 1 FROM lineitem, part WHERE p_partkey = l_partkey "
    ...     "AND p_brand = 'Brand#23' AND l_quantity < (SELECT 1)")[0].stmt)
    [(('p_partkey', 'l_partkey'), 'p_partkey = l_partkey'), (('p_brand',), "p_brand = 'Brand#23'")]
    """
    items = list(select.fromClause or ())
    if len(items) < 2 or not all(isinstance(i, ast.RangeVar) for i in items) or select.whereClause is None:
        return []  # one table is _local_filters' case; joins and subqueries in FROM are left alone
    out: list[tuple[tuple[str, ...], str]] = []
    for conjunct in _conjuncts(select.whereClause):
        if any(isinstance(n, (ast.SubLink, ast.ParamRef)) for n in _walk(conjunct)):
            continue
        mentions = [_column(n) for n in _walk(conjunct) if isinstance(n, ast.ColumnRef)]
        if not mentions or any(m is None or m.qualifier is not None for m in mentions):
            continue
        columns = tuple(dict.fromkeys(m.column for m in mentions if m is not None))
        out.append((columns, str(stream.RawStream()(conjunct))))
    return out


def _local_filters(select: ast.SelectStmt) -> list[tuple[str, str]]:
    """Conditions of one SELECT that read one table alias only, ANDed per alias.

    >>> _local_filters(pglast.parse_sql("SELECT 1 FROM t a JOIN u b ON b.x = a.x AND b.ok "
    ...     "WHERE a.n = 10 AND a.m > 2 AND b.k IN (SELECT 1) AND a.n + b.x > 0")[0].stmt)
    [('b', 'b.ok'), ('a', 'a.n = 10 AND a.m > 2')]
    >>> _local_filters(pglast.parse_sql("SELECT 1 FROM t WHERE n = 10")[0].stmt)
    [('t', 'n = 10')]
    """
    conjuncts: list[ast.Node] = []
    sources: list[str] = []

    def from_item(item: object) -> None:
        if isinstance(item, ast.RangeVar):
            sources.append(_alias(item))
        elif isinstance(item, ast.JoinExpr):
            from_item(item.larg)
            from_item(item.rarg)
            if item.quals is not None and item.jointype == enums.JoinType.JOIN_INNER:
                conjuncts.extend(_conjuncts(item.quals))
        else:
            sources.append("")  # a subquery or function: unqualified columns are ambiguous

    for item in select.fromClause or ():
        from_item(item)
    if select.whereClause is not None:
        conjuncts.extend(_conjuncts(select.whereClause))
    grouped: dict[str, list[str]] = {}
    for conjunct in conjuncts:
        if any(isinstance(n, (ast.SubLink, ast.ParamRef)) for n in _walk(conjunct)):
            continue
        mentions = [_column(n) for n in _walk(conjunct) if isinstance(n, ast.ColumnRef)]
        if not mentions or any(m is None for m in mentions):
            continue
        qualifiers = {m.qualifier for m in mentions if m is not None}
        if qualifiers == {None} and len(sources) == 1 and sources[0]:
            alias = sources[0]
        elif len(qualifiers) == 1 and None not in qualifiers:
            alias = next(iter(qualifiers))  # type: ignore[assignment]
        else:
            continue
        grouped.setdefault(alias, []).append(str(stream.RawStream()(conjunct)))
    return [(alias, " AND ".join(parts)) for alias, parts in grouped.items()]


def _conjuncts(node: ast.Node) -> list[ast.Node]:
    if isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.AND_EXPR:
        return [c for arg in node.args or () for c in _conjuncts(arg)]
    return [node]


def _alias(node: ast.RangeVar) -> str:
    """The name a table reference is known by in its query: its alias, else its own name."""
    if node.alias is not None and node.alias.aliasname:
        return node.alias.aliasname
    return node.relname or ""


def _copy(statement: ast.Node) -> ast.Node:
    """A private copy of a parse tree (parsed again from its deparsed text)."""
    tree = pglast.parse_sql(stream.RawStream()(statement))[0].stmt
    assert tree is not None
    return tree


def redirect(statement: ast.Node, target: Callable[[TableName], TableName | None]) -> str:
    """SQL text of `statement` with every table reference for which `target` gives a new name replaced.

    A replaced reference keeps its alias (or gets its old name as alias), so column references
    stay valid. CTE references are left alone. The tree passed in is not modified.

    >>> stmt = pglast.parse_sql("SELECT orders.id FROM public.orders JOIN users u ON u.id = orders.user_id")[0].stmt
    >>> redirect(stmt, lambda t: ("pg_temp", "copy_" + t[1]))
    'SELECT orders.id FROM pg_temp.copy_orders AS orders INNER JOIN pg_temp.copy_users AS u ON u.id = orders.user_id'
    >>> redirect(pglast.parse_sql("WITH users AS (SELECT 1 AS id) SELECT id FROM users")[0].stmt, lambda t: ("s", "x"))
    'WITH users AS (SELECT 1 AS id) SELECT id FROM users'
    """
    tree = _copy(statement)
    ctes = _cte_names(tree)

    class _Redirect(visitors.Visitor):
        def visit_RangeVar(self, ancestors: object, node: ast.RangeVar) -> ast.RangeVar | None:  # noqa: N802 - pglast's visitor protocol
            if node.relname is None or (node.schemaname is None and node.relname in ctes):
                return None
            new = target((node.schemaname, node.relname))
            if new is None:
                return None
            return ast.RangeVar(schemaname=new[0], relname=new[1], inh=node.inh,
                                relpersistence=node.relpersistence,
                                alias=node.alias or ast.Alias(aliasname=node.relname))

    _Redirect()(tree)
    return str(stream.RawStream()(tree))


def parameter_numbers(statement: ast.Node) -> list[int]:
    """The `$n` placeholders a statement uses, sorted.

    >>> parameter_numbers(pglast.parse_sql("SELECT * FROM t WHERE a = $2 OR b = $1 OR c = $2")[0].stmt)
    [1, 2]
    """
    return sorted({p.number for p in _nodes(statement, ast.ParamRef) if p.number is not None})


def bind(statement: ast.Node, values: dict[int, str | None]) -> str:
    """SQL text of `statement` with each `$n` replaced by the literal `values[n]` (None: NULL).

    A quoted literal has no type of its own, so PostgreSQL infers it from the context exactly as
    it infers a parameter's type.

    >>> bind(pglast.parse_sql("SELECT * FROM t WHERE a = $1 AND b > $2")[0].stmt, {1: "it's", 2: None})
    "SELECT * FROM t WHERE a = 'it''s' AND b > NULL"
    """
    tree = _copy(statement)

    class _Bind(visitors.Visitor):
        def visit_ParamRef(self, ancestors: object, node: ast.ParamRef) -> ast.A_Const:  # noqa: N802 - pglast's visitor protocol
            if node.number is None or node.number not in values:
                raise KeyError(f"no value for parameter ${node.number}")
            value = values[node.number]
            if value is None:
                return ast.A_Const(isnull=True)
            return ast.A_Const(isnull=False, val=ast.String(sval=value))

    _Bind()(tree)
    return str(stream.RawStream()(tree))


def _cte_lineage(statement: ast.Node, ctes: set[str], table_aliases: set[str]) -> dict[ColumnMention, ColumnMention]:
    """A CTE's output column that is a plain column of its (non-set-operation) body, as the column
    it passes on: so `ctr.ctr_store_sk = s_store_sk` links `sr_store_sk` to `s_store_sk`.

    Keyed by the mention through each alias of the CTE (and its bare name); aliases that also name a
    table are left out.

    >>> stmt = pglast.parse_sql("WITH c AS (SELECT sr_store_sk AS k, sum(x) AS v FROM sr GROUP BY 1) "
    ...     "SELECT 1 FROM c c1, s WHERE c1.k = s.id")[0].stmt
    >>> [(a.qualifier, a.column, b.qualifier, b.column) for a, b in relations(stmt).links]
    [(None, 'sr_store_sk', 's', 'id')]
    """
    outputs: dict[str, dict[str, ColumnMention]] = {}
    for cte in _nodes(statement, ast.CommonTableExpr):
        body = cte.ctequery
        if not isinstance(body, ast.SelectStmt) or not body.targetList or cte.aliascolnames:
            continue
        columns: dict[str, ColumnMention] = {}
        for target in body.targetList:
            mention = _column(target.val)
            if mention is not None:
                columns[target.name or mention.column] = mention
        outputs[cte.ctename or ""] = columns
    through: dict[ColumnMention, ColumnMention] = {}
    for node in _nodes(statement, ast.RangeVar):
        if node.schemaname is not None or node.relname is None or node.relname not in outputs:
            continue
        alias = _alias(node)
        if alias in table_aliases:
            continue
        for name, source in outputs[node.relname].items():
            through[ColumnMention(alias, name)] = source
    return through


def _cte_names(statement: ast.Node) -> set[str]:
    return {cte.ctename for cte in _nodes(statement, ast.CommonTableExpr) if cte.ctename}


def _nodes(root: ast.Node, kind: type[_N]) -> Iterator[_N]:
    for node in _walk(root):
        if isinstance(node, kind):
            yield node


def _walk(node: object) -> Iterator[object]:
    """Every node under `node`, pre-order (attribute order, not text order)."""
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, ast.Node):
        return
    yield node
    for name in node:  # pglast nodes iterate over their attribute names
        yield from _walk(getattr(node, name))


def _column(node: object) -> ColumnMention | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if not isinstance(node, ast.ColumnRef):
        return None
    fields = node.fields or ()
    names = [f.sval for f in fields if isinstance(f, ast.String) and f.sval is not None]
    if len(names) != len(fields) or not 1 <= len(names) <= 2:
        return None
    return ColumnMention(names[0] if len(names) == 2 else None, names[-1])


def _value(node: object) -> tuple[str, int | None] | None:
    if isinstance(node, ast.ParamRef):
        return f"${node.number}", node.number
    bare = node.arg if isinstance(node, ast.TypeCast) else node
    if isinstance(bare, ast.A_Const) and not bare.isnull and isinstance(node, ast.Node):
        return str(stream.RawStream()(node)), None
    return None


_FLIPPED = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "<>": "<>", "!=": "<>"}


def _in_link(sublink: ast.SubLink) -> tuple[ColumnMention, ColumnMention] | None:
    """`a IN (SELECT b FROM …)` links a to b, as `a = b` would.

    >>> stmt = pglast.parse_sql("SELECT 1 FROM s WHERE s.k IN (SELECT ps_k FROM ps WHERE ps_x > 1)")[0].stmt
    >>> [(a.qualifier, a.column, b.column) for a, b in relations(stmt).links]
    [('s', 'k', 'ps_k')]
    """
    if sublink.subLinkType != enums.SubLinkType.ANY_SUBLINK or sublink.operName:
        return None  # `= ANY` only (IN); other operators do not pair equal values
    left = _column(sublink.testexpr) if sublink.testexpr is not None else None
    select = sublink.subselect
    targets = select.targetList if isinstance(select, ast.SelectStmt) else None
    if left is None or not targets or len(targets) != 1:
        return None
    right = _column(targets[0].val)
    return (left, right) if right is not None else None


def _read_predicate(expr: ast.A_Expr, links: list[tuple[ColumnMention, ColumnMention]],
                    comparisons: list[Comparison]) -> None:
    op = expr.name[-1].sval if expr.name else ""
    kind = expr.kind
    if kind == enums.A_Expr_Kind.AEXPR_OP and op in _FLIPPED:
        left, right = _column(expr.lexpr), _column(expr.rexpr)
        if left is not None and right is not None:
            if op == "=":
                links.append((left, right))
            return
        for column, other, operator in ((left, expr.rexpr, op), (right, expr.lexpr, _FLIPPED[op])):
            value = _value(other)
            if column is not None and value is not None:
                comparisons.append(Comparison(column, operator, value[0], value[1]))
        return
    column = _column(expr.lexpr)
    if column is None or not isinstance(expr.rexpr, (tuple, list)):
        return
    if kind == enums.A_Expr_Kind.AEXPR_IN:
        operator = "=" if op == "=" else "<>"
        for item in expr.rexpr:
            value = _value(item)
            if value is not None:
                comparisons.append(Comparison(column, operator, value[0], value[1]))
    elif kind in (enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_NOT_BETWEEN,
                  enums.A_Expr_Kind.AEXPR_BETWEEN_SYM, enums.A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM):
        for item, operator in zip(expr.rexpr, (">=", "<="), strict=False):
            value = _value(item)
            if value is not None:
                comparisons.append(Comparison(column, operator, value[0], value[1]))
