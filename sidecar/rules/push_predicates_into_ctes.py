"""Push the filters that every reference of a multiply-referenced CTE applies into the CTE's body.

Since PostgreSQL 12 a CTE referenced two or more times is materialized: computed in full once, and
no reference's WHERE reaches inside it (TPC-DS Q04/Q11/Q74: ``year_total``, a UNION ALL of grouped
channel branches tagged ``'s'``/``'c'``/``'w'``, is read 4-6 times, each time filtered to one channel
and one year). When each reference ``t_i`` keeps only rows satisfying its own conjuncts ``C_i``, the
body may keep only rows satisfying ``C_1 OR ... OR C_k``: a removed row would have been removed by
every reference anyway. The outer filters stay where they are.

Constraints relied on (each checked; a CTE failing one is left alone, and the rule returns None
when no CTE changed):

- The statement is a SELECT or set operation with no data-modifying part. CTEs of a ``WITH
  RECURSIVE`` clause and CTEs marked ``NOT MATERIALIZED`` (already inlined by the planner) are left
  alone. The CTE's name is defined once in the statement, and every table reference with that name
  resolves to it (none in its own body or an earlier sibling's).
- It is referenced at least twice, every reference is a FROM/JOIN item of a SELECT, without column
  aliases, and not on the nullable side of an outer join. Each reference has at least one conjunct
  of its own: a top-level AND operand of the SELECT's WHERE (or of an inner join's ON when the
  SELECT has no outer join) that reads only columns of that reference (qualified by its alias, or
  unqualified when the reference is the SELECT's only FROM item), constants and parameters, and
  contains no subquery, aggregate, window, volatile or unknown (possibly volatile) function.
- The body is a SELECT or a tree of UNION ALL (no UNION, INTERSECT, EXCEPT, nor ORDER BY/LIMIT on
  the set operation). Each branch has no LIMIT/OFFSET/FETCH, DISTINCT ON, window function,
  set-returning function, ``*`` or locking clause, no volatile or unknown function anywhere, and
  exactly as many select items as the CTE has columns. A plain DISTINCT is kept (a filter on the
  output values commutes with it). A branch grouped by ROLLUP/CUBE/GROUPING SETS, or aggregating
  without GROUP BY (one row even over no input), receives nothing.
- Output column ``i`` is replaced by branch ``b``'s select expression ``i``. A conjunct goes into the
  branch's WHERE only when each expression it reads is a constant or, in a grouped branch, equal to
  a GROUP BY expression (a filter on grouping values removes whole groups), or, in an ungrouped
  branch, free of aggregates and subqueries. Other conjuncts are dropped from that disjunct, which
  only weakens it; a disjunct left empty makes the whole predicate TRUE, so that branch gets nothing.
- In a UNION ALL body, where the output type may differ from a branch's type, a column is only
  substituted when it is the same catalog column type in every branch, a string literal in every
  branch (output ``text``), or an int4-sized integer literal in every branch (output ``integer``).
- After substitution, comparisons of two string or two number constants are folded (``'s' = 'c'``
  is FALSE, ``2001 = 2001 + 1`` too; text equality under a deterministic collation); a disjunct
  with a FALSE conjunct is dropped. A branch left with no disjunct gets ``WHERE FALSE`` (kept, so
  the first branch still fixes the column names and types).
- A predicate already implied by the branch's WHERE (the same conjuncts, or an existing ``e IN
  (c, ...)`` within the pushed ``e = c OR ...``) is not added: it would only lower the planner's
  row estimates. On q74, whose body already has ``d_year IN (1999, 2000)``, adding ``d_year = 1999
  OR d_year = 2000`` slowed the body alone from 1.7 s to 3.0 s and the inlined query from 15-20 s
  to a timeout (nested loops chosen on 1-row estimates).

Materialization, decided per CTE after the checks above (a CTE already marked ``MATERIALIZED`` is
only pushed into):

- ``NOT MATERIALIZED``, with nothing pushed, when the body is a UNION ALL, each reference's own
  conjuncts fold at least one whole branch to FALSE (an equality on a constant tag column), the
  references do not all keep the same branches, no branch is recomputed more than twice on
  average (sum over references of the branches each keeps <= 2 x branches), and every reference is
  evaluated once (a FROM item of the outermost query, through derived tables and set operations
  only; never inside a subquery expression, which may rerun per outer row, nor inside another
  CTE). The planner then pushes each reference's own filters, stronger than their OR, into its own
  copy and drops the folded branches.
- Otherwise ``MATERIALIZED`` after pushing (k >= 2: one evaluation of the smaller body, as before).

Measured on TPC-DS SF 1 (PostgreSQL 15, 2 shared cores with other load, one run each unless two
are given, ``statement_timeout`` 120 s; equal result rows wherever both finished):

============  ========  ====================  ==============  ==========================
query         original  pushed, MATERIALIZED  NOT MATERIAL.   pushed + NOT MATERIALIZED
============  ========  ====================  ==============  ==========================
q04           timeout   timeout               timeout (*)     timeout
q11           timeout   timeout               61.9 / 31.1 (*) 30.9 / 22.1
q74           timeout   timeout               20.2 / 15.2 (*) timeout / timeout
q31           4.71      1.15 (*)              4.49            -
q39a          4.16      1.10 (*)              0.54            -
q39b          4.37      4.73 (*)              0.90            -
q75           3.57      2.33 (*)              4.00            -
q64           0.96      0.75 (*)              1.66            -
q01           timeout   not fired (*)         timeout         -
q30           9.55      not fired (*)         timeout         -
q81           38.54     not fired (*)         timeout         -
============  ========  ====================  ==============  ==========================

(*) what this rule produces. The materialized q04/q11/q74 stay slow because each ``CTE Scan`` with
two equality filters is estimated at 1 row and the six/four scans are joined by nested loops;
pushing still halves their body alone (q04 body 7.5 s to 3.8 s, q11 4.4 s to 2.6 s). Inlining
(q30/q81, references inside a correlated subquery) recomputes the aggregate per outer row, hence
the guard. q39 would profit from ``NOT MATERIALIZED`` too (one grouped branch, references differing
by an equality on a grouping column), but q31 and q75 of the same shape lose with it, so that case
stays materialized.

>>> import sqlglot
>>> sql = ("WITH t AS (SELECT k, 's' AS tag FROM a UNION ALL SELECT k, 'w' FROM b) "
...        "SELECT 1 FROM t AS x, t AS y WHERE x.k = y.k AND x.tag = 's' AND y.tag = 's' AND y.k > 5")
>>> print(push_predicates_into_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
WITH t AS MATERIALIZED (SELECT k, 's' AS tag FROM a UNION ALL SELECT k, 'w' FROM b WHERE FALSE) SELECT 1 FROM t AS x, t
AS y WHERE x.k = y.k AND x.tag = 's' AND y.tag = 's' AND y.k > 5
>>> sql = sql.replace("y.tag = 's'", "y.tag = 'w'")
>>> print(push_predicates_into_ctes(sqlglot.parse_one(sql, read="postgres"), Catalog()).sql(dialect="postgres"))
WITH t AS NOT MATERIALIZED (SELECT k, 's' AS tag FROM a UNION ALL SELECT k, 'w' FROM b) SELECT 1 FROM t AS x, t AS y
WHERE x.k = y.k AND x.tag = 's' AND y.tag = 'w' AND y.k > 5
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules._scope import (
    and_all,
    base_sources,
    catalog_table,
    conjuncts,
    inside,
    resolve_column,
)

# Unknown functions (exp.Anonymous) are refused too: their volatility is not known here.
_VOLATILE_FUNCTIONS = (exp.Anonymous, exp.Rand, exp.Randn, exp.Uuid)
_VOLATILE_NAMES = frozenset({"random", "nextval", "setval", "currval", "lastval", "clock_timestamp",
                             "timeofday", "gen_random_uuid", "uuid_generate_v4", "txid_current",
                             "pg_sleep", "setseed", "random_normal"})
_SET_RETURNING = (exp.Explode, exp.Unnest, exp.ExplodingGenerateSeries, exp.GenerateSeries)
_BRANCH_ALLOWED = frozenset({"with_", "expressions", "distinct", "from_", "joins", "where", "group",
                             "having", "order"})
_INT4 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class _Branch:
    select: exp.Select
    substitutes: dict[int, exp.Expr]
    """Output column index → the branch expression a pushed conjunct may read in its WHERE."""


def push_predicates_into_ctes(expression: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    tree = expression.copy()
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        return None
    if tree.find(exp.Insert, exp.Update, exp.Delete, exp.Merge):
        return None
    fired = False
    for with_ in list(tree.find_all(exp.With)):
        if with_.args.get("recursive"):
            continue
        # Later CTEs first: a filter pushed into a later body may give an earlier CTE's references
        # (in that body) a filter of their own.
        for index in reversed(range(len(with_.expressions))):
            fired = _push(with_, index, tree, catalog) or fired
    return tree if fired else None


def _push(with_: exp.With, index: int, tree: exp.Expr, catalog: Catalog) -> bool:
    cte = with_.expressions[index]
    if not isinstance(cte, exp.CTE) or cte.args.get("materialized") is False:
        return False
    key = _key(cte.args["alias"].this)
    if sum(_key(other.args["alias"].this) == key for other in tree.find_all(exp.CTE)) != 1:
        return False
    references = _references(with_, index, tree, key)
    if references is None or len(references) < 2:
        return False
    columns = _output_columns(cte)
    if columns is None:
        return False
    disjuncts: list[list[exp.Expr]] = []
    for reference in references:
        own = _own_conjuncts(reference, columns)
        if not own:
            return False
        disjuncts.append(own)
    branches = _branches(cte.this, len(columns), catalog, tree)
    if not branches:
        return False
    if cte.args.get("materialized") is None and _inlining_is_cheaper(references, disjuncts, branches):
        cte.set("materialized", False)
        return True

    pushed = False
    for branch in branches:
        predicate = _branch_predicate(branch, disjuncts)
        if predicate is None:
            continue
        where = branch.select.args.get("where")
        existing = conjuncts(where.this if where is not None else None)
        if _implied(predicate, existing):
            continue  # adding it would change nothing but lower the planner's row estimates
        branch.select.set("where", exp.Where(this=and_all([*existing, *conjuncts(predicate)])))
        pushed = True
    if pushed:
        cte.set("materialized", True)
    return pushed


def _inlining_is_cheaper(
    references: list[exp.Table], disjuncts: list[list[exp.Expr]], branches: list[_Branch]
) -> bool:
    """Each reference's own tag equalities fold away whole UNION ALL branches, the references keep
    different branches, no branch is recomputed more than twice on average, and every reference is
    evaluated once (a FROM item of the outermost query, through derived tables and set operations
    only: never inside a subquery expression that may be rerun per outer row, nor another CTE)."""
    if len(branches) < 2:
        return False
    kept: list[frozenset[int]] = []
    for disjunct in disjuncts:
        survivors = frozenset(
            index for index, branch in enumerate(branches)
            if not _is_false(_branch_predicate(branch, [disjunct]))
        )
        if len(survivors) == len(branches):
            return False
        kept.append(survivors)
    if len(set(kept)) < 2 or sum(len(survivors) for survivors in kept) > 2 * len(branches):
        return False
    return all(_evaluated_once(reference) for reference in references)


def _is_false(predicate: exp.Expr | None) -> bool:
    return isinstance(predicate, exp.Boolean) and predicate.this is False


def _evaluated_once(reference: exp.Table) -> bool:
    node: exp.Expr = reference
    while node.parent is not None:
        parent = node.parent
        if isinstance(parent, (exp.From, exp.Join)):
            pass
        elif isinstance(parent, exp.Select):
            if node.arg_key not in ("from_", "joins"):
                return False
        elif isinstance(parent, exp.Subquery):
            if not isinstance(parent.parent, (exp.From, exp.Join, exp.SetOperation)):
                return False
        elif not (isinstance(parent, exp.SetOperation) and node.arg_key in ("this", "expression")):
            return False
        node = parent
    return True


def _key(identifier: exp.Identifier) -> str:
    return identifier.name if identifier.quoted else identifier.name.lower()


def _references(with_: exp.With, index: int, tree: exp.Expr, key: str) -> list[exp.Table] | None:
    """The table nodes that name the CTE; None when a same-named node could mean something else."""
    owner = with_.parent
    if not isinstance(owner, exp.Expr):
        return None
    hidden = [cte.this for cte in with_.expressions[: index + 1]]
    references: list[exp.Table] = []
    for table in tree.find_all(exp.Table, bfs=False):
        if not isinstance(table.this, exp.Identifier) or _key(table.this) != key:
            continue
        if table.args.get("db") or table.args.get("catalog"):
            return None
        if not inside(table, owner) or any(inside(table, body) for body in hidden):
            return None
        references.append(table)
    return references


def _output_columns(cte: exp.CTE) -> list[str | None] | None:
    """The CTE's column keys in order (None for an unnamed or duplicated one)."""
    first = cte.this
    while isinstance(first, (exp.SetOperation, exp.Subquery)):
        first = first.this
    if not isinstance(first, exp.Select) or any(isinstance(e, exp.Star) for e in first.expressions):
        return None
    names: list[str | None] = []
    for item in first.expressions:
        if isinstance(item, exp.Alias):
            names.append(_key(item.args["alias"]))
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Identifier):
            names.append(_key(item.this))
        else:
            names.append(None)
    listed = cte.args["alias"].columns
    if listed:
        if len(listed) > len(names):
            return None
        names[: len(listed)] = [_key(ident) for ident in listed]
    return [name if name is not None and names.count(name) == 1 else None for name in names]


def _own_conjuncts(reference: exp.Table, columns: list[str | None]) -> list[exp.Expr]:
    """The reference's own conjuncts, with its columns rewritten to bare placeholders ``"<index>"``."""
    holder = reference.parent
    select = holder.parent if holder is not None else None
    if not isinstance(holder, (exp.From, exp.Join)) or not isinstance(select, exp.Select):
        return []
    if holder.arg_key not in ("from_", "joins"):
        return []
    alias = reference.args.get("alias")
    if alias is not None and alias.columns:
        return []
    nullable = _nullable_sides(select)
    name = _item_key(reference)
    if nullable is None or name is None or name in nullable:
        return []

    joins = select.args.get("joins") or []
    candidates = list(conjuncts(select.args["where"].this)) if select.args.get("where") else []
    if not any(join.side for join in joins):
        for join in joins:
            candidates.extend(conjuncts(join.args.get("on")))
    only_source = not joins
    own: list[exp.Expr] = []
    for candidate in candidates:
        mapped = _to_placeholders(candidate, name, only_source, columns)
        if mapped is not None:
            own.append(mapped)
    return own


def _nullable_sides(select: exp.Select) -> set[str] | None:
    """Keys of the FROM items an outer join may fill with NULLs (None: a join we do not model)."""
    from_ = select.args.get("from_")
    if from_ is None:
        return None
    seen = [_item_key(from_.this)]
    nullable: set[str | None] = set()
    for join in select.args.get("joins") or []:
        side = (join.side or "").upper()
        kind = (join.kind or "").upper()
        if kind not in ("", "INNER", "CROSS", "OUTER") or side not in ("", "LEFT", "RIGHT", "FULL"):
            return None
        if side in ("RIGHT", "FULL"):
            nullable.update(seen)
        if side in ("LEFT", "FULL"):
            nullable.add(_item_key(join.this))
        seen.append(_item_key(join.this))
    if None in nullable:
        return None
    return {key for key in nullable if key is not None}


def _item_key(node: exp.Expr) -> str | None:
    alias = node.args.get("alias")
    if isinstance(alias, exp.TableAlias) and isinstance(alias.this, exp.Identifier):
        return _key(alias.this)
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
        return _key(node.this)
    return None


def _to_placeholders(
    conjunct: exp.Expr, name: str, only_source: bool, columns: list[str | None]
) -> exp.Expr | None:
    if not _deterministic(conjunct) or conjunct.find(exp.Subquery, exp.AggFunc, exp.Window, exp.Star):
        return None
    mapped = conjunct.copy()
    used = False
    for column in list(mapped.find_all(exp.Column)):
        if column.args.get("db") or column.args.get("catalog") or not isinstance(column.this, exp.Identifier):
            return None
        qualifier = column.args.get("table")
        if qualifier is not None and _key(qualifier) != name:
            return None
        if qualifier is None and not only_source:
            return None
        key = _key(column.this)
        if key not in columns:
            return None
        column.replace(exp.column(str(columns.index(key))))
        used = True
    return mapped if used else None


def _deterministic(node: exp.Expr) -> bool:
    for function in node.find_all(exp.Func):
        if isinstance(function, _VOLATILE_FUNCTIONS):
            return False
        if function.sql_name().lower() in _VOLATILE_NAMES:
            return False
    return True


def _branches(
    body: exp.Expr, width: int, catalog: Catalog, tree: exp.Expr
) -> list[_Branch] | None:
    selects = _union_all_selects(body)
    if selects is None:
        return None
    for select in selects:
        if len(select.expressions) != width or not _pushable_branch(select):
            return None
    stable = _type_stable(selects, catalog, tree) if len(selects) > 1 else set(range(width))
    return [_Branch(select, _substitutes(select, stable)) for select in selects]


def _union_all_selects(body: exp.Expr) -> list[exp.Select] | None:
    if isinstance(body, exp.Subquery):
        if any(value for key, value in body.args.items() if key != "this"):
            return None
        return _union_all_selects(body.this)
    if isinstance(body, exp.Select):
        return [body]
    if isinstance(body, exp.Union) and body.args.get("distinct") is False:
        if any(value for key, value in body.args.items()
               if key not in ("this", "expression", "distinct", "with_")):
            return None
        left = _union_all_selects(body.this)
        right = _union_all_selects(body.expression)
        return left + right if left is not None and right is not None else None
    return None


def _pushable_branch(select: exp.Select) -> bool:
    if any(value for key, value in select.args.items() if key not in _BRANCH_ALLOWED):
        return False
    distinct = select.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        return False
    for item in select.expressions:
        value = item.this if isinstance(item, exp.Alias) else item
        if isinstance(value, exp.Star) or (isinstance(value, exp.Column) and isinstance(value.this, exp.Star)):
            return False
        if item.find(*_SET_RETURNING):
            return False
    if any(node.parent_select is select for node in select.find_all(exp.Window)):
        return False
    return _deterministic(select)


def _substitutes(select: exp.Select, stable: set[int]) -> dict[int, exp.Expr]:
    """The output columns a WHERE of this branch may read, as the branch expressions."""
    group = select.args.get("group")
    aggregated = bool(select.args.get("having")) or any(
        node.parent_select is select for node in select.find_all(exp.AggFunc)
    )
    if group is not None:
        if any(isinstance(e, (exp.Rollup, exp.Cube, exp.GroupingSets)) for e in group.expressions):
            return {}
        if any(group.args.get(key) for key in ("rollup", "cube", "grouping_sets", "totals")):
            return {}
    elif aggregated:
        return {}  # aggregate without GROUP BY: one row even when WHERE removes every input row
    group_sql = _group_expressions(select) if group is not None else set()
    substitutes: dict[int, exp.Expr] = {}
    for index, item in enumerate(select.expressions):
        if index not in stable:
            continue
        value = item.this if isinstance(item, exp.Alias) else item
        if value.find(exp.AggFunc, exp.Window, exp.Subquery):
            continue
        if group is not None and value.find(exp.Column) and value.sql(dialect="postgres") not in group_sql:
            continue
        substitutes[index] = value
    return substitutes


def _group_expressions(select: exp.Select) -> set[str]:
    rendered: set[str] = set()
    for item in select.args["group"].expressions:
        if isinstance(item, exp.Literal) and not item.is_string and item.name.isdigit():
            position = int(item.name) - 1
            if 0 <= position < len(select.expressions):
                target = select.expressions[position]
                item = target.this if isinstance(target, exp.Alias) else target
        rendered.add(item.sql(dialect="postgres"))
    return rendered


def _type_stable(selects: list[exp.Select], catalog: Catalog, tree: exp.Expr) -> set[int]:
    """Output columns whose branch expressions all have the UNION ALL's output type."""
    cte_names = {_key(cte.args["alias"].this) for cte in tree.find_all(exp.CTE)}
    stable: set[int] = set()
    for index in range(len(selects[0].expressions)):
        kinds = {_value_type(select, index, catalog, cte_names) for select in selects}
        if len(kinds) == 1 and None not in kinds:
            stable.add(index)
    return stable


def _value_type(select: exp.Select, index: int, catalog: Catalog, cte_names: set[str]) -> str | None:
    item = select.expressions[index]
    value = item.this if isinstance(item, exp.Alias) else item
    if isinstance(value, exp.Literal):
        if value.is_string:
            return "literal text"
        if value.name.isdigit() and _INT4[0] <= int(value.name) <= _INT4[1]:
            return "literal integer"
        return None
    if not isinstance(value, exp.Column):
        return None
    resolved = resolve_column(value, select, catalog)
    if resolved is None:
        return None
    alias, _, column = resolved
    node = base_sources(select).get(alias)
    if node is None or catalog_table(node, catalog) is None:
        return None
    if not node.args.get("db") and _key(node.this) in cte_names:
        return None  # a CTE named like a catalog table: its columns carry no catalog facts
    return "column " + re.sub(r"\(.*\)", "", column.data_type).strip()


def _branch_predicate(branch: _Branch, disjuncts: list[list[exp.Expr]]) -> exp.Expr | None:
    """OR of the disjuncts mapped into the branch; None when it is TRUE (nothing to push)."""
    kept: list[exp.Expr] = []
    seen: set[str] = set()
    for disjunct in disjuncts:
        parts: list[exp.Expr] = []
        false = False
        for conjunct in disjunct:
            mapped = _substitute(conjunct, branch.substitutes)
            if mapped is None:
                continue  # not pushable into WHERE here: dropping it only weakens the disjunct
            value = _fold(mapped)
            if value is False:
                false = True
                break
            if value is None:
                parts.append(mapped)
        if false:
            continue
        if not parts:
            return None
        combined = and_all(parts)
        assert combined is not None
        rendered = combined.sql(dialect="postgres")
        if rendered not in seen:
            seen.add(rendered)
            kept.append(combined)
    if not kept:
        return exp.Boolean(this=False)
    if len(kept) == 1:
        return kept[0]
    return exp.or_(*kept, copy=False)  # wraps AND operands in parentheses


def _substitute(conjunct: exp.Expr, substitutes: dict[int, exp.Expr]) -> exp.Expr | None:
    mapped = conjunct.copy()
    for column in list(mapped.find_all(exp.Column)):
        value = substitutes.get(int(column.name))
        if value is None:
            return None
        replacement = value.copy()
        if not isinstance(replacement, (exp.Column, exp.Literal, exp.Func, exp.Cast, exp.Paren)):
            replacement = exp.paren(replacement, copy=False)
        column.replace(replacement)
    return mapped


def _fold(predicate: exp.Expr) -> bool | None:
    """TRUE/FALSE for a comparison of plain literals, else None (left to PostgreSQL)."""
    predicate = predicate.unnest()
    if isinstance(predicate, (exp.EQ, exp.NEQ)):
        equal = _literal_equal(predicate.this, predicate.expression)
        if equal is None:
            return None
        return equal if isinstance(predicate, exp.EQ) else not equal
    if isinstance(predicate, exp.In) and predicate.args.get("expressions") and not predicate.args.get("query"):
        results = [_literal_equal(predicate.this, option) for option in predicate.expressions]
        if any(result is True for result in results):
            return True
        if all(result is False for result in results):
            return False
    return None


def _literal_equal(left: exp.Expr, right: exp.Expr) -> bool | None:
    left_value, right_value = _constant(left), _constant(right)
    if left_value is None or right_value is None or type(left_value) is not type(right_value):
        return None
    return left_value == right_value


def _constant(node: exp.Expr) -> str | Decimal | None:
    """The value of a string literal or of integer/decimal literal arithmetic (``2001 + 1``)."""
    node = node.unnest()
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.name
        try:
            return Decimal(node.name)
        except InvalidOperation:
            return None
    if isinstance(node, exp.Neg):
        inner = _constant(node.this)
        return -inner if isinstance(inner, Decimal) else None
    if isinstance(node, (exp.Add, exp.Sub, exp.Mul)):
        left, right = _constant(node.this), _constant(node.expression)
        if not isinstance(left, Decimal) or not isinstance(right, Decimal):
            return None
        if isinstance(node, exp.Add):
            return left + right
        return left - right if isinstance(node, exp.Sub) else left * right
    return None


def _implied(predicate: exp.Expr, existing: list[exp.Expr]) -> bool:
    """An existing conjunct already implies ``predicate``: it is one of them, or both restrict the
    same expression to constant sets, the existing set inside the pushed one (q74: ``d_year IN
    (1999, 2000)`` against ``d_year = 1999 OR d_year = 1999 + 1``)."""
    rendered = {part.sql(dialect="postgres") for part in existing}
    if all(part.sql(dialect="postgres") in rendered for part in conjuncts(predicate)):
        return True
    wanted = _value_set(predicate)
    if wanted is None:
        return False
    for part in existing:
        have = _value_set(part)
        if have is not None and have[0] == wanted[0] and have[1] <= wanted[1]:
            return True
    return False


def _value_set(node: exp.Expr) -> tuple[str, frozenset[str | Decimal]] | None:
    """``(e, {c, ...})`` for ``e = c``, ``e IN (c, ...)`` or an OR of those over the same ``e``."""
    node = node.unnest()
    if isinstance(node, exp.Or):
        left, right = _value_set(node.this), _value_set(node.expression)
        if left is None or right is None or left[0] != right[0]:
            return None
        return left[0], left[1] | right[1]
    if isinstance(node, exp.EQ):
        subject, options = node.this, [node.expression]
        if _constant(subject) is not None:
            subject, options = node.expression, [node.this]
    elif isinstance(node, exp.In) and node.expressions and not node.args.get("query"):
        subject, options = node.this, list(node.expressions)
    else:
        return None
    values = [_constant(option) for option in options]
    if _constant(subject) is not None or any(value is None for value in values):
        return None
    return subject.sql(dialect="postgres"), frozenset(value for value in values if value is not None)
