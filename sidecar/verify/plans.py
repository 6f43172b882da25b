"""Plan shape from EXPLAIN (FORMAT JSON): a structural signature and a compact text rendering."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Fields that identify what a node does (SPA §3.4: operators, relations, join keys, filters, group keys).
_STRUCTURAL_FIELDS = (
    "Node Type", "Relation Name", "Index Name", "Join Type", "Strategy",
    "Hash Cond", "Merge Cond", "Join Filter", "Index Cond", "Filter", "Group Key", "Sort Key",
    "Subplan Name", "CTE Name",
)


def walk(plan: dict[str, Any], depth: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """Pre-order (depth, node) pairs."""
    yield depth, plan
    for child in plan.get("Plans", ()):
        yield from walk(child, depth + 1)


def signature(plan: dict[str, Any] | None) -> tuple[tuple[Any, ...], ...]:
    """The structural identity of a plan; two plans with equal signatures do the same work.

    >>> p = {"Node Type": "Seq Scan", "Relation Name": "t", "Total Cost": 10.0}
    >>> signature(p) == signature(dict(p, **{"Total Cost": 99.0}))
    True
    """
    if plan is None:
        return ()
    return tuple(
        (depth,) + tuple(_freeze(node.get(f)) for f in _STRUCTURAL_FIELDS) for depth, node in walk(plan)
    )


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def render(plan: dict[str, Any] | None, max_lines: int = 40) -> str:
    """Indented one-line-per-node text: operator, relation, estimated rows and total cost.

    >>> print(render({"Node Type": "Hash Join", "Plan Rows": 5, "Total Cost": 9.5,
    ...               "Plans": [{"Node Type": "Seq Scan", "Relation Name": "t", "Plan Rows": 5, "Total Cost": 1.0}]}))
    Hash Join (rows=5 cost=9.5)
      Seq Scan on t (rows=5 cost=1.0)
    """
    if plan is None:
        return ""
    lines = []
    for depth, node in walk(plan):
        label = node.get("Node Type", "?")
        if node.get("Join Type") and "Join" in label:
            label = f"{label} ({node['Join Type']})" if node["Join Type"] != "Inner" else label
        if node.get("Relation Name"):
            label += f" on {node['Relation Name']}"
        if node.get("Index Name"):
            label += f" using {node['Index Name']}"
        lines.append(f"{'  ' * depth}{label} (rows={node.get('Plan Rows')} cost={node.get('Total Cost')})")
        if len(lines) >= max_lines:
            lines.append(f"{'  ' * depth}...")
            break
    return "\n".join(lines)


def total_cost(plan: dict[str, Any] | None) -> float:
    """The planner's estimate for the whole query (a hint only; speed is measured).

    >>> total_cost({"Node Type": "Result", "Total Cost": 0.01})
    0.01
    """
    return float(plan.get("Total Cost", 0.0)) if plan else 0.0
