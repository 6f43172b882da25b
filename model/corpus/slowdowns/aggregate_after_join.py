"""A table pre-aggregated per join key before the join → aggregated after the join: ``FROM (SELECT
o.k, SUM(o.x) AS s, COUNT(*) AS c FROM orders AS o WHERE w GROUP BY o.k) AS o JOIN p ON p.id = o.k …
SUM(o.s) … CAST(SUM(o.c) AS BIGINT)`` → ``FROM orders AS o JOIN p ON p.id = o.k … WHERE w … SUM(o.x) …
COUNT(*)``. The inverse of the rules backend's ``preaggregate_before_join``.

Why it is slower: pre-aggregated, the fact table collapses to one row per join key before the join
(a few thousand rows join instead of millions); after the join every fact row is joined and
then aggregated.

Why it is equivalent: the outer aggregates re-aggregate partial ones, which the rule only does
where that is exact — a sum of per-key sums is the sum, a sum of per-key counts the count (the
CAST to BIGINT restoring COUNT's type), a sum of sums over a sum of counts the average, a min of
mins the min, a max of maxes the max — and each is mapped back to the single aggregate over the
joined rows. Preconditions: the derived table is ``SELECT <keys>, <aggregates> FROM <one base
table> [WHERE w] GROUP BY <keys>`` (keys plain columns output under their own names; aggregates
aliased SUM/COUNT/MIN/MAX calls without DISTINCT or FILTER; nothing else); the outer SELECT is
grouped, joins it by an inner join or a comma, uses its aggregate columns only in the patterns
above, its keys freely, and has no other aggregate than those and MIN/MAX; the inner table's
alias names no other outer FROM item.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> sql = ("SELECT p.category, SUM(o.sum_1) AS revenue, CAST(SUM(o.count_1) AS BIGINT) AS orders FROM (SELECT o.product_id, "
...        "SUM(o.amount) AS sum_1, COUNT(*) AS count_1 FROM orders AS o WHERE o.status = 'delivered' GROUP BY o.product_id) AS o "
...        "JOIN products AS p ON p.id = o.product_id GROUP BY p.category")
>>> print(aggregate_after_join(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
SELECT p.category, SUM(o.amount) AS revenue, COUNT(*) AS orders FROM orders AS o JOIN products AS p ON p.id = o.product_id WHERE o.status = 'delivered' GROUP BY p.category
"""
from __future__ import annotations

from sqlglot import exp

from model.corpus.slowdowns._checks import deterministic
from sidecar.catalog import Catalog
from sidecar.rules._scope import and_all, conjuncts, source_names

_PARTIALS = (exp.Sum, exp.Count, exp.Min, exp.Max)


def aggregate_after_join(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    for select in list(tree.find_all(exp.Select)):
        if select.args.get("group") is None:
            continue
        items = [select.args["from_"].this] if select.args.get("from_") else []
        items += [j.this for j in select.args.get("joins") or [] if not j.side and not j.args.get("using")]
        for item in items:
            if isinstance(item, exp.Subquery) and _rewrite(select, item):
                return tree
    return None


def _rewrite(select: exp.Select, derived: exp.Subquery) -> bool:
    body = derived.this
    name = derived.alias_or_name.lower()
    if not name or not isinstance(body, exp.Select) or not _partial(body):
        return False
    table = body.args["from_"].this
    inner = table.alias_or_name.lower()
    if inner != name and inner in source_names(select):
        return False
    partials = {item.alias.lower(): item.this for item in body.expressions if isinstance(item, exp.Alias)}
    keys = {item.name.lower() for item in body.expressions if isinstance(item, exp.Column)}
    mapped = _mapped(select, name, partials)
    if mapped is None:
        return False
    inside = {id(n) for node, _ in mapped for n in node.walk()}
    for column in select.find_all(exp.Column):
        if (column.parent_select is select and id(column) not in inside and column.table.lower() == name
                and column.name.lower() not in keys):
            return False  # an aggregate column used outside the patterns
    aggregates = [a for a in select.find_all(exp.AggFunc) if a.parent_select is select and id(a) not in inside]
    if any(not isinstance(a, (exp.Min, exp.Max)) for a in aggregates):
        return False  # another aggregate would see the joined rows, not the groups, once they are expanded
    for node, replacement in mapped:
        node.replace(replacement)
    moved_where = body.args.get("where")
    base = table.copy()
    base.set("alias", exp.TableAlias(this=exp.to_identifier(derived.alias_or_name)))
    derived.replace(base)
    extra = [p.copy() for p in conjuncts(moved_where.this if moved_where is not None else None)]
    if inner != name:
        for part in extra:
            _requalify(part, inner, derived.alias_or_name)
        for _, replacement in mapped:
            _requalify(replacement, inner, derived.alias_or_name)
    where = select.args.get("where")
    if extra:
        select.set("where", exp.Where(this=and_all([*(p.copy() for p in conjuncts(where.this if where else None)),
                                                    *extra])))
    return True


def _partial(body: exp.Select) -> bool:
    group = body.args.get("group")
    if group is None or body.args.get("joins") or not isinstance(body.args["from_"].this, exp.Table):
        return False
    if any(body.args.get(k) for k in ("having", "distinct", "order", "limit", "offset", "with_", "windows", "locks")):
        return False
    if not deterministic(body) or not all(isinstance(k, exp.Column) for k in group.expressions):
        return False
    grouped = {k.sql(dialect="postgres") for k in group.expressions}
    for item in body.expressions:
        if isinstance(item, exp.Column):
            if item.sql(dialect="postgres") not in grouped:
                return False
        elif not (isinstance(item, exp.Alias) and isinstance(item.this, _PARTIALS)
                  and not item.this.find(exp.Distinct, exp.Filter, exp.Window, exp.Query)):
            return False
    return True


def _column(node: exp.Expr, name: str) -> str | None:
    return node.name.lower() if isinstance(node, exp.Column) and node.table.lower() == name else None


def _mapped(select: exp.Select, name: str, partials: dict[str, exp.Expr]) -> list[tuple[exp.Expr, exp.Expr]] | None:
    """(outer expression, single aggregate) for every re-aggregation of the derived table."""
    found: list[tuple[exp.Expr, exp.Expr]] = []
    taken: set[int] = set()

    def partial(node: exp.Expr, kind: type[exp.Expr]) -> exp.Expr | None:
        column = _column(node.this, name) if isinstance(node, kind) else None
        value = partials.get(column) if column else None
        return value

    for node in list(select.find_all(exp.Div, exp.Cast, exp.Sum, exp.Min, exp.Max)):
        if node.parent_select is not select or any(id(a) in taken for a in [node, *node.iter_expressions()]):
            continue
        replacement: exp.Expr | None = None
        if isinstance(node, exp.Div):
            total, count = partial(node.this, exp.Sum), partial(node.expression, exp.Sum)
            if (isinstance(total, exp.Sum) and isinstance(count, exp.Count)
                    and total.this.sql(dialect="postgres") == count.this.sql(dialect="postgres")):
                replacement = exp.Avg(this=total.this.copy())
        elif isinstance(node, exp.Cast) and node.to.sql(dialect="postgres").upper() == "BIGINT":
            value = partial(node.this, exp.Sum)
            if isinstance(value, (exp.Count, exp.Sum)):
                replacement = value.copy()
        elif isinstance(node, exp.Sum):
            value = partial(node, exp.Sum)
            replacement = value.copy() if isinstance(value, exp.Sum) else None
        else:
            value = partial(node, type(node))
            replacement = value.copy() if isinstance(value, type(node)) else None
        if replacement is not None:
            found.append((node, replacement))
            taken.update(id(n) for n in node.walk())
    return found or None


def _requalify(node: exp.Expr, old: str, new: str) -> None:
    for column in node.find_all(exp.Column):
        if column.table.lower() == old:
            column.set("table", exp.to_identifier(new))
