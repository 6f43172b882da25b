"""Plan hints for a rewrite prompt: SPA's cardinality flow (§3.2) and E3's linearized plan.

Both read the "Plan" object of PostgreSQL's `EXPLAIN (FORMAT JSON)` (`document[0]["Plan"]`), with or
without ANALYZE, and return bounded, deterministic text.

Cardinality flow (SPA §3.2). For every operator:

- rows out: rows emitted over all its executions: "Actual Rows" x "Actual Loops" with ANALYZE,
  "Plan Rows" x estimated executions without (a Nested Loop's inner side runs once per outer row, a
  SubPlan once per row of its parent, an InitPlan once, a node under Gather in each parallel process);
- rows in: for a scan the physical rows it read, those its filters removed included (with ANALYZE:
  rows out + "Rows Removed by Filter" + "Rows Removed by Index Recheck"; without, a Seq Scan reads the
  `table_rows` given for its relation, and another scan without a Filter reads what it returns); for
  any other operator the sum of its children's rows out. InitPlans and SubPlans are side inputs, not
  part of that sum; they appear as operators of their own;
- change: "reduce by N%" (a reducer), "expand by Nx" (an expander) or "pass-through", with a slack
  of half a row per loop for the rounding of EXPLAIN's per-loop averages; "input unknown" for a
  filtered scan whose rows read a plain EXPLAIN does not give (treated like a pass-through).

Operators fall into SPA's five categories: "Nested Loop" (outer/inner sides, how often the inner
side ran, result rows per outer row), "Join" (Hash and Merge joins, grouped by join predicate),
"Join with Filter" (an index scan driven by another relation's values, i.e. the inner side of an
index nested-loop join or a correlated subquery, that also has a Filter: the index probes and the
filter share the reduction), "Filter" (other scans, and any operator with a Filter, mapping predicate
selectivity to the change) and "Aggregation" (Aggregate, Group, Unique, SetOp, WindowAgg). Other
operators (Sort, Hash, Gather, Limit, Materialize, Memoize, Append, ...) carry no hint; the
linearized plan shows them. Pass-through operators are pruned, except the root of a correlated
subplan (a "SubPlan") and high-cost scans (at least `HIGH_COST_SHARE` of the plan's total cost).
Identical operators (same category, operator, relations and predicate, up to the `_N` suffixes
PostgreSQL adds to repeated aliases) are merged into one hint with a count, which is how SPA groups
joins by predicate; the same rule keeps a query that repeats a subquery compact. Hints are ranked
within each category by absolute reduction |rows in - rows out|; `max_items` keeps the largest.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.verify.plans import operator_name

CATEGORIES = ("Nested Loop", "Join", "Join with Filter", "Filter", "Aggregation")
"""SPA's five categories, in the order hints are rendered."""

HIGH_COST_SHARE = 0.25
"""A scan whose own planner cost is at least this share of the plan's total is always kept."""

MAX_CONDITION_CHARS = 80
"""Predicates and key lists longer than this are cut (with "...") in hints and linearized plans."""

_AGGREGATION_TYPES = frozenset({"Aggregate", "Group", "Unique", "SetOp", "WindowAgg"})
_SIDE_INPUTS = frozenset({"InitPlan", "SubPlan"})
# A SubPlan named in these runs once per row the operator reads; elsewhere, once per row it emits.
_QUAL_KEYS = ("Filter", "Join Filter", "Hash Cond", "Merge Cond", "Index Cond", "Recheck Cond", "One-Time Filter")
_MAX_NAMES = 4  # relation (or subplan) names listed before "..."
# A qualified column reference "alias.column" (or "quoted alias".column) in a deparsed condition.
_QUALIFIED = re.compile(r'(?:"((?:[^"]|"")+)"|\b([A-Za-z_][\w$]*))\.(?=[A-Za-z_"])')
_LITERAL = re.compile(r"'(?:[^']|'')*'")
# PostgreSQL's EXPLAIN renames repeated aliases o, o_1, o_2, ...; merging hints ignores the suffix.
_REPEATED_ALIAS = re.compile(r"\b([A-Za-z_][\w$]*?)_\d+\b")


@dataclass(frozen=True)
class Hint:
    """One hint of SPA's cardinality flow: an operator (or `count` identical ones) and its effect on rows."""

    category: str
    """One of `CATEGORIES`."""
    operator: str
    """The operator as text EXPLAIN names it: "Parallel Seq Scan", "Hash Semi Join", "HashAggregate"."""
    target: str
    """What it works on: "orders o" for a scan, "o, u ⋈ e" (outer ⋈ inner) for a join, "e, u" otherwise."""
    condition: str
    """Its predicates or keys, labelled ("filter: ...", "on ...", "by ..."); "" when it has none."""
    rows_in: float
    """Rows read (scans) or received from its children (other operators), over all executions."""
    rows_out: float
    """Rows emitted over all executions."""
    change: str
    """"reduce by 90%", "expand by 2.0x", "pass-through", or "input unknown" (a filtered scan in a
    plain EXPLAIN, which does not say how many rows the scan read)."""
    loops: float = 1.0
    """How often it ran; for a Nested Loop, how often its inner side ran; for Join with Filter, the index probes."""
    count: int = 1
    """How many identical plan operators this hint stands for."""
    scopes: tuple[str, ...] = ()
    """The InitPlans/SubPlans these operators sit in ("SubPlan 1"); empty in the main query."""
    actual: bool = False
    """True when the rows come from EXPLAIN ANALYZE, False for planner estimates."""

    @property
    def reduction(self) -> float:
        """Rows in minus rows out: positive for a reducer, negative for an expander."""
        return self.rows_in - self.rows_out


@dataclass(frozen=True)
class _Flow:
    """What the cardinality analysis knows about one plan node."""

    node: dict[str, Any]
    depth: int
    order: int  # pre-order position
    end: int  # pre-order position just past its subtree
    scope: str  # nearest enclosing InitPlan/SubPlan, "" in the main query
    loops: float  # executions, parallel copies included: rows out = per-loop rows x loops
    repeats: float  # executions without parallel copies (re-scans, subplan calls)
    rows_in: float
    rows_in_known: bool  # False for a filtered scan in a plain EXPLAIN with no table size to go on
    rows_out: float
    slack: float  # rounding of per-loop averages behind rows_in and rows_out
    own_cost: float  # planner cost of this node alone, over its repeats
    subplan_root: bool  # the node SPA keeps for a correlated subplan
    sides: tuple[tuple[str, ...], ...]  # aliases scanned under each data child
    inner_loops: float  # Nested Loop: executions of its inner side
    index_join: str  # Nested Loop: the parameterized index condition on its inner side


def plan_hints(
    plan: dict[str, Any] | None, max_items: int = 12, table_rows: Mapping[str, float] | None = None
) -> list[Hint]:
    """SPA's cardinality-flow hints, grouped by category (in `CATEGORIES` order), largest change first.

    `table_rows` (relation name -> row count, e.g. pg_class.reltuples) lets a plain EXPLAIN report
    how many rows a Seq Scan read; EXPLAIN ANALYZE does not need it.

    >>> plan = {"Node Type": "Hash Join", "Join Type": "Inner", "Hash Cond": "(o.user_id = u.id)",
    ...         "Plan Rows": 9000, "Actual Rows": 9100, "Actual Loops": 1, "Total Cost": 400.0, "Plans": [
    ...     {"Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o", "Parent Relationship": "Outer",
    ...      "Filter": "(status = 'paid'::text)", "Plan Rows": 9000, "Actual Rows": 9100, "Actual Loops": 1,
    ...      "Rows Removed by Filter": 40900, "Total Cost": 300.0},
    ...     {"Node Type": "Hash", "Parent Relationship": "Inner", "Plan Rows": 1000, "Actual Rows": 1000,
    ...      "Actual Loops": 1, "Total Cost": 20.0, "Plans": [
    ...         {"Node Type": "Seq Scan", "Relation Name": "users", "Alias": "u", "Parent Relationship": "Outer",
    ...          "Plan Rows": 1000, "Actual Rows": 1000, "Actual Loops": 1, "Total Cost": 20.0}]}]}
    >>> for hint in plan_hints(plan):
    ...     print(hint.category, "|", hint.operator, hint.target, "|", hint.rows_in, "->", hint.rows_out, hint.change)
    Join | Hash Join o ⋈ u | 10100.0 -> 9100.0 reduce by 9.9%
    Filter | Seq Scan orders o | 50000.0 -> 9100.0 reduce by 81.8%

    The Hash and the small scan of users change nothing and are pruned. Without ANALYZE, the scan's
    selectivity is known only when the table's size is:

    >>> plain = {"Node Type": "Seq Scan", "Relation Name": "orders", "Filter": "(amount > 100)",
    ...          "Plan Rows": 500, "Total Cost": 10.0}
    >>> plan_hints(plain)[0].change
    'input unknown'
    >>> plan_hints(plain, table_rows={"orders": 50000})[0].change
    'reduce by 99.0%'
    """
    if not plan or max_items <= 0:
        return []
    flows = _flows(plan, table_rows or {})
    actual = "Actual Rows" in plan
    root_cost = float(plan.get("Total Cost") or 0.0)
    groups: dict[tuple[str, ...], list[list[_Flow]]] = {}
    for flow in flows:
        category = _category(flow.node)
        if category is None:
            continue
        same = groups.setdefault(_merge_key(flow, category), [])
        # Identical operators merge, but an operator never merges with one of its own ancestors.
        group = next((g for g in same if not any(m.order < flow.order < m.end for m in g)), None)
        if group is None:
            same.append([flow])
        else:
            group.append(flow)
    candidates = []
    for members in (g for same in groups.values() for g in same):
        hint = _hint(_category(members[0].node) or "", members, actual)
        high_cost = _is_scan(members[0].node) and root_cost > 0 and (
            sum(f.own_cost for f in members) >= HIGH_COST_SHARE * root_cost)
        if hint.change not in ("pass-through", "input unknown") or high_cost or any(f.subplan_root for f in members):
            candidates.append((hint, members[0].order))
    candidates.sort(key=lambda c: (-abs(c[0].reduction), c[1]))
    kept = candidates[:max_items]
    kept.sort(key=lambda c: (CATEGORIES.index(c[0].category), -abs(c[0].reduction), c[1]))
    return [hint for hint, _ in kept]


def render_hints(hints: list[Hint]) -> str:
    """The hints as prompt text: a header, then one line per hint under its category.

    Its length is bounded by the number of hints: predicates are cut at `MAX_CONDITION_CHARS` and
    join sides list at most a few relations.

    >>> print(render_hints([
    ...     Hint("Nested Loop", "Nested Loop", "o ⋈ e", "index cond: (user_id = o.user_id)", 20000.0, 310.0,
    ...          "reduce by 98.5%", loops=10000.0, actual=True),
    ...     Hint("Aggregation", "Aggregate", "o", "", 500000.0, 10000.0, "reduce by 98.0%", loops=10000.0,
    ...          count=2, scopes=("SubPlan 1", "SubPlan 2"), actual=True)]))
    Cardinality flow (actual rows over all loops; largest change first):
    Nested Loop:
    - Nested Loop on o ⋈ e [index cond: (user_id = o.user_id)]: 20000 -> 310 rows, reduce by 98.5%; inner side ran 10000
    times, 0.031 rows per outer row
    Aggregation:
    - Aggregate x2 on o (in SubPlan 1, SubPlan 2): 500000 -> 10000 rows, reduce by 98.0%; ran 10000 times in all
    >>> render_hints([])
    ''
    """
    if not hints:
        return ""
    source = "actual rows over all loops" if hints[0].actual else "planner estimates over all loops"
    lines = [f"Cardinality flow ({source}; largest change first):"]
    category = None
    for hint in hints:
        if hint.category != category:
            category = hint.category
            lines.append(f"{category}:")
        lines.append(_hint_line(hint))
    return "\n".join(lines)


def linearize(plan: dict[str, Any] | None, max_lines: int = 60) -> str:
    """E3's execution hint: the plan flattened to one indented line per operator, with its predicates
    and row counts (summed over loops; "rows~" marks planner estimates, "rows=" measured ones, then
    the estimate as "est="), rows removed by filters, loops, and the planner's cost.

    >>> plan = {"Node Type": "Aggregate", "Strategy": "Plain", "Plan Rows": 1, "Total Cost": 12.5, "Plans": [
    ...     {"Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o", "Parent Relationship": "Outer",
    ...      "Filter": "(amount > '100'::numeric)", "Plan Rows": 450, "Total Cost": 11.3}]}
    >>> print(linearize(plan))
    Aggregate rows~1 cost=12.5
      Seq Scan on orders o [filter: (amount > '100'::numeric)] rows~450 cost=11.3
    >>> print(linearize(plan, max_lines=1))
    Aggregate rows~1 cost=12.5
    ... 1 more operator
    """
    if not plan:
        return ""
    flows = _flows(plan, {})
    actual = "Actual Rows" in plan
    lines = [_linear_line(flow, actual) for flow in flows[:max_lines]]
    hidden = len(flows) - max_lines
    if hidden > 0:
        lines.append(f"... {hidden} more operator{'s' if hidden > 1 else ''}")
    return "\n".join(lines)


# --- cardinality analysis ----------------------------------------------------------------------


def _flows(plan: dict[str, Any], table_rows: Mapping[str, float]) -> list[_Flow]:
    """Every node of the plan with its cardinality flow, in pre-order."""
    actual = "Actual Rows" in plan
    flows = _visit(plan, _Context(actual, table_rows), depth=0, loops=1.0, repeats=1.0, procs=1.0,
                   scope="", subplan_root=False)
    ends = [len(flows)] * len(flows)
    open_nodes: list[int] = []
    for order, flow in enumerate(flows):
        while open_nodes and flows[open_nodes[-1]].depth >= flow.depth:
            ends[open_nodes.pop()] = order
        open_nodes.append(order)
    return [_Flow(**{**flow.__dict__, "order": order, "end": ends[order]}) for order, flow in enumerate(flows)]


@dataclass(frozen=True)
class _Context:
    actual: bool
    table_rows: Mapping[str, float]


def _visit(node: dict[str, Any], ctx: _Context, depth: int, loops: float, repeats: float, procs: float,
           scope: str, subplan_root: bool) -> list[_Flow]:
    """The flows of `node`'s subtree in pre-order; `loops`/`repeats` are the estimates from above."""
    if ctx.actual:
        loops = _number(node.get("Actual Loops"))
        repeats = loops / procs
    per_loop = _number(node.get("Actual Rows" if ctx.actual else "Plan Rows"))
    rows_out = per_loop * loops
    kind = node.get("Node Type")
    keeps_subplan_root = subplan_root and _category(node) is None  # handed on to the first categorized node
    children: list[dict[str, Any]] = list(node.get("Plans", ()))
    child_flows: dict[int, list[_Flow]] = {}

    # Data children first: a Nested Loop's inner side runs once per outer row.
    child_loops, child_repeats, child_procs = loops, repeats, procs
    if kind in ("Gather", "Gather Merge"):
        if node.get("Single Copy"):
            child_procs = 1.0
        elif ctx.actual:
            child_procs = _number(node.get("Workers Launched", node.get("Workers Planned"))) + 1.0
        else:
            child_procs = _parallel_divisor(int(_number(node.get("Workers Planned"))))
            child_loops = loops * child_procs
    elif kind == "Materialize" and repeats > 0:  # stores its input once, replays it on rescans
        child_loops, child_repeats = loops / repeats, 1.0
    data_positions = [i for i, c in enumerate(children) if c.get("Parent Relationship") not in _SIDE_INPUTS]
    for position in data_positions:
        loops_here, repeats_here = child_loops, child_repeats
        if kind == "Nested Loop" and position != data_positions[0]:
            outer_rows = child_flows[data_positions[0]][0].rows_out
            loops_here, repeats_here = outer_rows, outer_rows / child_procs
        child_flows[position] = _visit(children[position], ctx, depth + 1, loops_here, repeats_here, child_procs,
                                       scope, keeps_subplan_root and position == data_positions[0])
    data = [child_flows[i][0] for i in data_positions]

    rows_in_known = True
    if _is_scan(node):
        if ctx.actual:
            removed = _number(node.get("Rows Removed by Filter")) + _number(node.get("Rows Removed by Index Recheck"))
            rows_in = (per_loop + removed) * loops
        elif data:
            rows_in = sum(f.rows_out for f in data)
        elif kind == "Seq Scan" and node.get("Relation Name") in ctx.table_rows:
            reads = repeats if node.get("Parallel Aware") else loops
            rows_in = float(ctx.table_rows[str(node["Relation Name"])]) * reads
        else:
            rows_in, rows_in_known = rows_out, not node.get("Filter")
        slack = 0.5 * loops
    elif data:
        rows_in = sum(f.rows_out for f in data)
        slack = 0.5 * (loops + sum(f.loops for f in data))
    else:
        rows_in, slack = rows_out, 0.5 * loops

    # Side inputs: an InitPlan runs once, a SubPlan once per row its parent handles.
    for position, child in enumerate(children):
        if child.get("Parent Relationship") not in _SIDE_INPUTS:
            continue
        correlated = child.get("Parent Relationship") == "SubPlan"
        named = re.compile(rf"\b{re.escape(_scope_name(child))}\b")
        in_quals = any(named.search(str(node.get(key, ""))) for key in _QUAL_KEYS)
        per_parent_loop = (rows_in if in_quals else rows_out) / loops if loops else 0.0
        child_flows[position] = _visit(
            child, ctx, depth + 1,
            loops * per_parent_loop if correlated else 1.0,
            repeats * per_parent_loop if correlated else 1.0,
            procs, _scope_name(child), correlated)

    own_cost = _number(node.get("Total Cost")) * repeats - sum(
        _number(flows[0].node.get("Total Cost")) * flows[0].repeats for flows in child_flows.values())
    inner = child_flows[data_positions[1]] if kind == "Nested Loop" and len(data_positions) > 1 else None
    flow = _Flow(
        node=node, depth=depth, order=0, end=0, scope=scope, loops=loops, repeats=repeats, rows_in=rows_in,
        rows_in_known=rows_in_known, rows_out=rows_out, slack=slack, own_cost=max(0.0, own_cost),
        subplan_root=subplan_root and not keeps_subplan_root,
        sides=tuple(_relations(child_flows[i]) for i in data_positions),
        inner_loops=inner[0].loops if inner else 0.0,
        index_join=_index_join(inner) if inner else "",
    )
    result = [flow]
    for position in range(len(children)):
        result.extend(child_flows[position])
    return result


def _parallel_divisor(workers: int) -> float:
    """PostgreSQL's row divisor for a partial path (costsize.c, get_parallel_divisor), leader included."""
    leader = 1.0 - 0.3 * workers
    return workers + (leader if leader > 0 else 0.0)


def _relations(flows: list[_Flow]) -> tuple[str, ...]:
    """Aliases scanned in a subtree's data flow, in plan order, each once."""
    names: list[str] = []
    side_depths: list[int] = []
    for flow in flows:
        while side_depths and flow.depth <= side_depths[-1]:
            side_depths.pop()
        if side_depths:
            continue
        if flow.node.get("Parent Relationship") in _SIDE_INPUTS and flow is not flows[0]:
            side_depths.append(flow.depth)
            continue
        name = flow.node.get("Alias") or flow.node.get("Relation Name")
        if name and _is_scan(flow.node) and name not in names:
            names.append(str(name))
    return tuple(names)


def _index_join(flows: list[_Flow]) -> str:
    """The first parameterized index condition on a Nested Loop's inner side."""
    for flow in flows:
        if _is_scan(flow.node) and _parameterized(flow.node):
            return _index_condition(flow.node)
    return ""


def _is_scan(node: dict[str, Any]) -> bool:
    return str(node.get("Node Type", "")).endswith("Scan")


def _index_name(node: dict[str, Any]) -> str:
    """The index a scan uses; a Bitmap Heap Scan's is on its Bitmap Index Scan child."""
    if node.get("Index Name"):
        return str(node["Index Name"])
    for child in node.get("Plans", ()):
        if child.get("Node Type") == "Bitmap Index Scan" and child.get("Index Name"):
            return str(child["Index Name"])
    return ""


def _index_condition(node: dict[str, Any]) -> str:
    return str(node.get("Index Cond") or node.get("Recheck Cond") or "")


def _parameterized(node: dict[str, Any]) -> bool:
    """An index condition that compares with another relation's columns: an index-driven join."""
    condition = _LITERAL.sub("''", _index_condition(node))
    own = node.get("Alias") or node.get("Relation Name")
    for quoted, plain in _QUALIFIED.findall(condition):
        if (quoted.replace('""', '"') if quoted else plain) != own:
            return True
    return False


def _category(node: dict[str, Any]) -> str | None:
    kind = node.get("Node Type")
    if kind == "Nested Loop":
        return "Nested Loop"
    if kind in ("Hash Join", "Merge Join"):
        return "Join"
    if kind in _AGGREGATION_TYPES:
        return "Aggregation"
    if _is_scan(node) and kind != "Bitmap Index Scan":  # its Bitmap Heap Scan speaks for it
        return "Join with Filter" if node.get("Filter") and _parameterized(node) else "Filter"
    if node.get("Filter") or node.get("One-Time Filter"):
        return "Filter"
    return None


def _scope_name(node: dict[str, Any]) -> str:
    name = str(node.get("Subplan Name") or node.get("Parent Relationship") or "")
    return name.split(" (returns", 1)[0]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


# --- hints -------------------------------------------------------------------------------------


def _merge_key(flow: _Flow, category: str) -> tuple[str, ...]:
    node = flow.node
    names = " ⋈ ".join(", ".join(side) for side in flow.sides)
    identity = (category, operator_name(node), str(node.get("Relation Name") or ""), names, _condition(flow, category))
    return tuple(_REPEATED_ALIAS.sub(r"\1", part) for part in identity)


def _hint(category: str, members: list[_Flow], actual: bool) -> Hint:
    first = members[0]
    rows_in = sum(f.rows_in for f in members)
    rows_out = sum(f.rows_out for f in members)
    if category == "Nested Loop":
        loops = sum(f.inner_loops for f in members)
    elif category == "Join with Filter":
        loops = sum(f.loops for f in members)
    else:
        loops = sum(f.repeats for f in members)
    scopes = tuple(dict.fromkeys(f.scope or "main query" for f in members)) if any(f.scope for f in members) else ()
    known = all(f.rows_in_known for f in members)
    return Hint(
        category=category, operator=operator_name(first.node), target=_target(first, category),
        condition=_condition(first, category), rows_in=rows_in, rows_out=rows_out,
        change=_change(rows_in, rows_out, sum(f.slack for f in members)) if known else "input unknown",
        loops=loops, count=len(members), scopes=scopes, actual=actual,
    )


def _target(flow: _Flow, category: str) -> str:
    node = flow.node
    if _is_scan(node):
        relation, alias = node.get("Relation Name"), node.get("Alias")
        if relation:
            return f"{relation} {alias}" if alias and alias != relation else str(relation)
        if node.get("CTE Name"):
            return f"CTE {node['CTE Name']}"
        if node.get("Function Name"):
            return f"function {node['Function Name']}"
        return str(alias or "")
    sides = [_names(side) for side in flow.sides]
    if category in ("Nested Loop", "Join"):
        return " ⋈ ".join(sides)
    return _names(tuple(n for side in flow.sides for n in side))


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(names[:_MAX_NAMES]) + (", ..." if len(names) > _MAX_NAMES else "")


def _condition(flow: _Flow, category: str) -> str:
    node = flow.node
    parts = []
    if category == "Join":
        parts.append(f"on {_clip(node.get('Hash Cond') or node.get('Merge Cond') or '')}")
    if node.get("Join Filter"):
        parts.append(f"join filter: {_clip(node['Join Filter'])}")
    if category == "Nested Loop" and not node.get("Join Filter") and flow.index_join:
        parts.append(f"index cond: {_clip(flow.index_join)}")
    if _is_scan(node) and _index_condition(node):
        index = f"{_index_name(node)} " if _index_name(node) else ""
        parts.append(f"index: {index}{_clip(_index_condition(node))}")
    if category == "Aggregation" and node.get("Group Key"):
        parts.append(f"by {_clip(', '.join(str(k) for k in node['Group Key']))}")
    if node.get("Filter"):
        parts.append(f"{'having' if category == 'Aggregation' else 'filter'}: {_clip(node['Filter'])}")
    if node.get("One-Time Filter"):
        parts.append(f"one-time filter: {_clip(node['One-Time Filter'])}")
    return "; ".join(p for p in parts if p != "on ")


def _change(rows_in: float, rows_out: float, slack: float) -> str:
    """SPA's change-ratio label.

    >>> _change(1000, 100, 0.5), _change(100, 250, 0.5), _change(100, 100.4, 0.5), _change(0, 3, 0.5)
    ('reduce by 90.0%', 'expand by 2.5x', 'pass-through', 'expand from 0 rows')
    """
    if abs(rows_in - rows_out) <= slack:
        return "pass-through"
    if rows_out < rows_in:
        percent = 100.0 * (rows_in - rows_out) / rows_in
        text = f"{percent:.1f}"
        return f"reduce by {'>99.9' if text == '100.0' and rows_out > 0 else text}%"
    if rows_in <= 0:
        return "expand from 0 rows"
    factor = rows_out / rows_in
    return f"expand by {factor:.1f}x" if factor < 100 else f"expand by {factor:.0f}x"


def _hint_line(hint: Hint) -> str:
    text = f"- {hint.operator}"
    if hint.count > 1:
        text += f" x{hint.count}"
    if hint.target:
        text += f" on {hint.target}"
    if hint.condition:
        text += f" [{hint.condition}]"
    if hint.scopes:
        shown = ", ".join(hint.scopes[:_MAX_NAMES]) + (", ..." if len(hint.scopes) > _MAX_NAMES else "")
        text += f" (in {shown})"
    text += f": {_rows(hint.rows_in)} -> {_rows(hint.rows_out)} rows, {hint.change}"
    if hint.category == "Nested Loop" and hint.loops > 0:
        text += f"; inner side ran {_rows(hint.loops)} times, {_ratio(hint.rows_out / hint.loops)} rows per outer row"
    elif hint.category == "Join with Filter" and hint.change == "input unknown":
        text += f"; {_rows(hint.loops)} index probes"
    elif hint.category == "Join with Filter" and hint.loops > 0:
        kept = 100.0 * hint.rows_out / hint.rows_in if hint.rows_in else 100.0
        text += (f"; {_rows(hint.loops)} index probes returned {_ratio(hint.rows_in / hint.loops)} rows each,"
                 f" the filter kept {kept:.1f}%")
    elif hint.loops > 1.5 * hint.count:
        text += f"; ran {_rows(hint.loops)} times" + (" in all" if hint.count > 1 else "")
    return text


def _rows(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _ratio(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _clip(value: Any, limit: int = MAX_CONDITION_CHARS) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- linearized plan ---------------------------------------------------------------------------

_LINEAR_CONDITIONS = (
    ("Hash Cond", "on"), ("Merge Cond", "on"), ("Join Filter", "join filter"), ("Index Cond", "index cond"),
    ("Recheck Cond", "recheck"), ("Filter", "filter"), ("One-Time Filter", "one-time filter"),
    ("Group Key", "group by"), ("Sort Key", "sort by"), ("Cache Key", "cache key"),
)


def _linear_line(flow: _Flow, actual: bool) -> str:
    node = flow.node
    text = "  " * flow.depth
    if node.get("Parent Relationship") in _SIDE_INPUTS:
        text += f"{_scope_name(node)}: "
    text += operator_name(node)
    if node.get("Index Name") and node.get("Node Type") != "Bitmap Index Scan":
        text += f" using {node['Index Name']}"
    elif node.get("Index Name"):
        text += f" on {node['Index Name']}"
    if _is_scan(node) and node.get("Node Type") != "Bitmap Index Scan":
        target = _target(flow, "Filter")
        if target:
            text += f" on {target}"
    conditions = []
    for key, label in _LINEAR_CONDITIONS:
        value = node.get(key)
        if value:
            shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
            conditions.append(f"{label}: {_clip(shown)}")
    if conditions:
        text += f" [{'; '.join(conditions)}]"
    if actual and flow.loops == 0:
        return text + " never executed"
    if actual:
        text += f" rows={_rows(flow.rows_out)} est={_rows(_number(node.get('Plan Rows')) * flow.loops)}"
        if flow.loops > 1:
            text += f" loops={_rows(flow.loops)}"
        removed = _number(node.get("Rows Removed by Filter")) + _number(node.get("Rows Removed by Join Filter"))
        if removed:
            text += f" removed={_rows(removed * flow.loops)}"
    else:
        text += f" rows~{_rows(flow.rows_out)}"
    cost = _number(node.get("Total Cost"))
    text += f" cost={cost:.0f}" if cost >= 100 else f" cost={cost:g}"
    if actual and "Actual Total Time" in node:
        text += f" time={_number(node['Actual Total Time']) * flow.repeats:.1f}ms"
    return text
