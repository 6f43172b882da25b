"""Plan shape from EXPLAIN (FORMAT JSON): structural signature, compact rendering, plan divergence."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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


def operator_name(node: dict[str, Any]) -> str:
    """The operator as PostgreSQL's text EXPLAIN names it (strategy, join type, parallelism folded in).

    >>> operator_name({"Node Type": "Aggregate", "Strategy": "Hashed", "Partial Mode": "Partial"})
    'Partial HashAggregate'
    >>> operator_name({"Node Type": "Hash Join", "Join Type": "Semi"})
    'Hash Semi Join'
    >>> operator_name({"Node Type": "Nested Loop", "Join Type": "Left"})
    'Nested Loop Left Join'
    >>> operator_name({"Node Type": "Seq Scan", "Parallel Aware": True})
    'Parallel Seq Scan'
    """
    name = str(node.get("Node Type", "?"))
    join_type = node.get("Join Type")
    if name == "Aggregate":
        name = _AGGREGATE_NAMES.get(str(node.get("Strategy")), name)
        if node.get("Partial Mode") in ("Partial", "Finalize"):
            name = f"{node['Partial Mode']} {name}"
    elif name == "SetOp" and node.get("Strategy") == "Hashed":
        name = "HashSetOp"
    elif join_type and join_type != "Inner":
        name = f"Nested Loop {join_type} Join" if name == "Nested Loop" else name.replace(" Join", f" {join_type} Join")
    elif node.get("Scan Direction") == "Backward":
        name += " Backward"
    return f"Parallel {name}" if node.get("Parallel Aware") else name


_AGGREGATE_NAMES = {"Sorted": "GroupAggregate", "Hashed": "HashAggregate", "Mixed": "MixedAggregate"}


def describe(node: dict[str, Any]) -> str:
    """One operator in words: its name, index and relation, as text EXPLAIN prints them.

    >>> describe({"Node Type": "Index Scan", "Index Name": "orders_user_id_idx", "Relation Name": "orders"})
    'Index Scan using orders_user_id_idx on orders'
    >>> describe({"Node Type": "Aggregate", "Strategy": "Plain", "Subplan Name": "SubPlan 1"})
    'SubPlan 1: Aggregate'
    """
    text = operator_name(node)
    if node.get("Index Name"):
        text += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        text += f" on {node['Relation Name']}"
    elif node.get("CTE Name"):
        text += f" on CTE {node['CTE Name']}"
    if node.get("Subplan Name"):
        text = f"{node['Subplan Name']}: {text}"
    return text


@dataclass(frozen=True)
class PlanDivergence:
    """How two plans differ structurally (SPA §3.4); runtime numbers play no part."""

    changed: bool
    """True exactly when the plans' `signature()`s differ."""
    score: float
    """0.0 for the same plan, 1.0 for plans with nothing in common (see `divergence`)."""
    differences: list[str] = field(default_factory=list)
    """Readable differences, most telling first, at most `MAX_DIFFERENCES` (+ one "... more" line)."""


MAX_DIFFERENCES = 12
_CLIP = 60
# Which field differences get which wording; operator-identity fields share one "A -> B" line.
_IDENTITY_FIELDS = ("Node Type", "Relation Name", "Index Name", "Join Type", "Strategy", "Subplan Name", "CTE Name")
_PROPERTY_WORDS = (
    ("Hash Cond", "join keys", "differ"), ("Merge Cond", "join keys", "differ"),
    ("Join Filter", "join filter", "differs"), ("Index Cond", "index condition", "differs"),
    ("Filter", "filter", "differs"), ("Group Key", "aggregation keys", "differ"), ("Sort Key", "sort keys", "differ"),
)


def divergence(before: dict[str, Any] | None, after: dict[str, Any] | None) -> PlanDivergence:
    """Compare two plans as operator trees (SPA §3.4): operator types, scanned relations and indexes,
    join types and keys, filters, aggregation and sort keys, and child structure.

    `changed` is exactly `signature(before) != signature(after)`. `score` is the ordered tree edit
    distance (Zhang-Shasha) divided by the number of operators in both plans: deleting or inserting
    an operator costs 1, turning one into another costs 2 x the share of their structural
    properties that differ, so the same plan scores 0.0 and plans with nothing in common 1.0.
    The cheapest edit script also says what changed: operators matched to a different one, and
    operators only one plan has (a subtree found in both plans at different places has moved).

    >>> scan = {"Node Type": "Seq Scan", "Relation Name": "orders", "Filter": "(user_id = 42)"}
    >>> probe = {"Node Type": "Index Scan", "Relation Name": "orders",
    ...          "Index Name": "orders_user_id_idx", "Index Cond": "(user_id = 42)"}
    >>> d = divergence(scan, probe)
    >>> d.changed, round(d.score, 2)
    (True, 0.8)
    >>> for line in d.differences:
    ...     print(line)
    Seq Scan on orders -> Index Scan using orders_user_id_idx on orders
    index condition added at Index Scan using orders_user_id_idx on orders: (user_id = 42)
    filter removed at Index Scan using orders_user_id_idx on orders: (user_id = 42)
    >>> divergence(scan, dict(scan, **{"Total Cost": 1.0}))
    PlanDivergence(changed=False, score=0.0, differences=[])

    An operator added above the rest, and a swap of a join's sides:

    >>> divergence(scan, {"Node Type": "Gather", "Plans": [scan]}).differences
    ['added Gather']
    >>> def join(outer, inner):
    ...     return {"Node Type": "Hash Join", "Join Type": "Inner", "Plans": [
    ...         {"Node Type": "Seq Scan", "Relation Name": outer},
    ...         {"Node Type": "Hash", "Plans": [{"Node Type": "Seq Scan", "Relation Name": inner}]}]}
    >>> divergence(join("orders", "users"), join("users", "orders")).differences[0]
    'join order changed: orders, users -> users, orders'
    """
    if signature(before) == signature(after):
        return PlanDivergence(changed=False, score=0.0, differences=[])
    if before is None or after is None:
        missing = "no plan before" if before is None else "no plan after"
        return PlanDivergence(changed=True, score=1.0, differences=[missing])
    edit = _TreeEdit(before, after)
    score = min(1.0, max(0.0, edit.distance / (edit.a.size + edit.b.size)))
    pairs, deleted, inserted = edit.script()
    differences = _relation_differences(before, after)
    for i, j in sorted(pairs, key=lambda pair: edit.a.preorder[pair[0]]):
        differences.extend(_pair_differences(edit.a.nodes[i], edit.b.nodes[j]))
    removed, added = _edited_subtrees(edit.a, deleted), _edited_subtrees(edit.b, inserted)
    added_signatures = [signature(n) for n, whole in added if whole]
    removed_signatures = [signature(n) for n, whole in removed if whole]
    for node, whole in removed:
        moved = whole and signature(node) in added_signatures
        differences.append(f"{'moved' if moved else 'removed'} {_subtree(node) if whole else describe(node)}")
    for node, whole in added:
        if not (whole and signature(node) in removed_signatures):
            differences.append(f"added {_subtree(node) if whole else describe(node)}")
    if not differences:  # unreachable while every signature field is compared above; kept as a guard
        differences.append("plan structure differs")
    if len(differences) > MAX_DIFFERENCES:
        differences = differences[:MAX_DIFFERENCES] + [f"... and {len(differences) - MAX_DIFFERENCES} more differences"]
    return PlanDivergence(changed=True, score=score, differences=differences)


def _node_similarity(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The share of structural properties present in either node that are equal in both."""
    present = [f for f in _STRUCTURAL_FIELDS if f == "Node Type" or f in a or f in b]
    equal = sum(1 for f in present if _freeze(a.get(f)) == _freeze(b.get(f)))
    return equal / len(present)


class _PostOrder:
    """A plan tree numbered in post-order from 1, as Zhang-Shasha needs it."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.nodes: list[dict[str, Any]] = [{}]  # index 0 stands for "no node"
        self.leftmost: list[int] = [0]  # post-order number of each node's leftmost leaf
        self.preorder: list[int] = [0]
        self._number(plan, [0])
        self.size = len(self.nodes) - 1
        # Key roots: the root and every node with a left sibling, i.e. the last node per leftmost leaf.
        self.keyroots = sorted({self.leftmost[i]: i for i in range(1, self.size + 1)}.values())

    def _number(self, node: dict[str, Any], counter: list[int]) -> int:
        preorder = counter[0]
        counter[0] += 1
        children = [self._number(child, counter) for child in node.get("Plans", ())]
        self.nodes.append(node)
        self.leftmost.append(self.leftmost[children[0]] if children else len(self.nodes) - 1)
        self.preorder.append(preorder)
        return len(self.nodes) - 1

    def subtree(self, i: int) -> range:
        return range(self.leftmost[i], i + 1)


class _TreeEdit:
    """Zhang-Shasha ordered tree edit distance between two plans, with its edit script."""

    def __init__(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        self.a, self.b = _PostOrder(before), _PostOrder(after)
        self._rename: dict[tuple[int, int], float] = {}
        self.tree = [[0.0] * len(self.b.nodes) for _ in self.a.nodes]
        for i in self.a.keyroots:
            for j in self.b.keyroots:
                self._forest(i, j)
        self.distance = self.tree[-1][-1]

    def rename(self, i: int, j: int) -> float:
        if (i, j) not in self._rename:
            self._rename[(i, j)] = 2.0 * (1.0 - _node_similarity(self.a.nodes[i], self.b.nodes[j]))
        return self._rename[(i, j)]

    def _forest(self, i: int, j: int) -> list[list[float]]:
        """Forest distances between the subtrees rooted at i and j; fills tree distances on the way.

        forest[x - la[i] + 1][y - lb[j] + 1] is the distance between the forests la[i]..x and lb[j]..y.
        """
        la, lb, tree = self.a.leftmost, self.b.leftmost, self.tree
        x0, y0 = la[i] - 1, lb[j] - 1
        forest = [[float(x + y) for y in range(j - y0 + 1)] for x in range(i - x0 + 1)]
        for x in range(la[i], i + 1):
            row, previous, tree_row = forest[x - x0], forest[x - x0 - 1], tree[x]
            x_is_on_path = la[x] == la[i]
            before_x = forest[la[x] - 1 - x0]
            for y in range(lb[j], j + 1):
                delete, insert = previous[y - y0], row[y - y0 - 1]
                best = (delete if delete < insert else insert) + 1.0
                if x_is_on_path and lb[y] == lb[j]:
                    match = previous[y - y0 - 1] + self.rename(x, y)
                    best = match if match < best else best
                    tree_row[y] = best
                else:
                    match = before_x[lb[y] - 1 - y0] + tree_row[y]
                    best = match if match < best else best
                row[y - y0] = best
        return forest

    def script(self) -> tuple[list[tuple[int, int]], set[int], set[int]]:
        """(matched pairs, deleted nodes of before, inserted nodes of after), by post-order number."""
        la, lb = self.a.leftmost, self.b.leftmost
        pairs: list[tuple[int, int]] = []
        deleted: set[int] = set()
        inserted: set[int] = set()
        pending = [(self.a.size, self.b.size)]
        while pending:
            i, j = pending.pop()
            forest = self._forest(i, j)
            x0, y0 = la[i] - 1, lb[j] - 1
            x, y = i, j
            while x >= la[i] or y >= lb[j]:
                here = forest[x - x0][y - y0]
                if x >= la[i] and here == forest[x - x0 - 1][y - y0] + 1.0:
                    deleted.add(x)
                    x -= 1
                elif y >= lb[j] and here == forest[x - x0][y - y0 - 1] + 1.0:
                    inserted.add(y)
                    y -= 1
                elif la[x] == la[i] and lb[y] == lb[j]:
                    pairs.append((x, y))
                    x, y = x - 1, y - 1
                else:
                    pending.append((x, y))
                    x, y = la[x] - 1, lb[y] - 1
        return pairs, deleted, inserted


def _edited_subtrees(tree: _PostOrder, edited: set[int]) -> list[tuple[dict[str, Any], bool]]:
    """Deleted (or inserted) operators in plan order, a wholly edited subtree as its root: (node, whole)."""
    found = []
    covered: set[int] = set()
    for i in sorted(edited, key=lambda n: tree.preorder[n]):
        if i in covered:
            continue
        whole = all(k in edited for k in tree.subtree(i))
        if whole:
            covered.update(tree.subtree(i))
        found.append((tree.nodes[i], whole))
    return found


def _relation_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    old = [str(n["Relation Name"]) for _, n in walk(before) if n.get("Relation Name")]
    new = [str(n["Relation Name"]) for _, n in walk(after) if n.get("Relation Name")]
    if old == new:
        return []
    kind = "join order changed" if sorted(old) == sorted(new) else "relations scanned differ"
    return [f"{kind}: {_clip(', '.join(old)) or 'none'} -> {_clip(', '.join(new)) or 'none'}"]


def _pair_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    if any(_freeze(old.get(f)) != _freeze(new.get(f)) for f in _IDENTITY_FIELDS):
        lines.append(f"{describe(old)} -> {describe(new)}")
    where = describe(new)
    for key, words, verb in _PROPERTY_WORDS:
        a, b = _text(old.get(key)), _text(new.get(key))
        if a == b:
            continue
        if not a:
            lines.append(f"{words} added at {where}: {_clip(b)}")
        elif not b:
            lines.append(f"{words} removed at {where}: {_clip(a)}")
        else:
            lines.append(f"{words} {verb} at {where}: {_clip(a)} -> {_clip(b)}")
    return lines


def _subtree(node: dict[str, Any]) -> str:
    below = sum(1 for _ in walk(node)) - 1
    return describe(node) + (f" (and {below} operator{'s' if below > 1 else ''} below)" if below else "")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _clip(text: str, limit: int = _CLIP) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
