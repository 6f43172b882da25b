"""Beam search over sequences of rule applications, ranked by the planner's estimate.

LearnedRewrite searches rule sequences with a learned cost model; here the planner's EXPLAIN cost
ranks and prunes, and the verifier's execution decides afterwards. The search itself does no I/O:
the caller passes ``cost`` (SQL → estimated total cost, None when PostgreSQL cannot plan it).

- Depth 1: every rule that fires on the query alone. Each is kept (the planner's estimate is only a
  hint, and the estimate of a correlated SubPlan is often far off), unless PostgreSQL cannot plan it.
- Depth d > 1: each rule applied to each of the ``width`` cheapest candidates of depth d-1 (a rule
  at most once per sequence). A child is kept only if the planner estimates it cheaper than its
  parent: a step that does not help by the estimate is pruned.
- Candidates come back cheapest first (by estimate; fewer rules first on ties), deduplicated by SQL.
- ``deadline`` (``time.monotonic()``) bounds the search: past it no new candidate is planned.

>>> import sqlglot
>>> from sidecar.catalog import Catalog
>>> def add_limit(tree, catalog):
...     return None if tree.args.get("limit") else tree.limit(10)
>>> def star(tree, catalog):
...     return None if tree.is_star else tree.select("*", append=False)
>>> cost = {"SELECT a FROM t LIMIT 10": 5.0, "SELECT * FROM t": 30.0, "SELECT * FROM t LIMIT 10": 4.0}
>>> [(c.sql, c.rules) for c in beam_search("SELECT a FROM t", Catalog(), cost.get, rules=(add_limit, star))]
[('SELECT * FROM t LIMIT 10', ('add_limit', 'star')), ('SELECT a FROM t LIMIT 10', ('add_limit',)), ('SELECT * FROM t',
('star',))]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import SqlglotError

from sidecar.catalog import Catalog
from sidecar.rules._scope import parse
from sidecar.rules.declines import collecting

logger = logging.getLogger(__name__)

Cost = Callable[[str], "float | None"]
RuleFunction = Callable[[exp.Expr, Catalog], "exp.Expr | None"]


@dataclass(frozen=True)
class SearchCandidate:
    sql: str
    rules: tuple[str, ...]
    cost: float


@dataclass
class SearchStats:
    planned: int = 0
    """Candidates EXPLAINed."""
    unplannable: int = 0
    pruned: int = 0
    """Deeper candidates the estimate did not favour over their parent."""
    elapsed_s: float = 0.0
    out_of_time: bool = False
    declined: dict[str, str] = field(default_factory=dict)
    """Rule → why it left a pattern it recognised in the query alone (:mod:`sidecar.rules.declines`)."""


def beam_search(sql: str, catalog: Catalog, cost: Cost, *, rules: Sequence[RuleFunction] | None = None,
                width: int = 3, depth: int = 3, deadline: float | None = None,
                stats: SearchStats | None = None) -> list[SearchCandidate]:
    """Candidates from single rules and rule sequences, cheapest estimate first (see the module)."""
    if rules is None:
        from sidecar.rules import RULES

        rules = RULES
    stats = stats if stats is not None else SearchStats()
    started = time.monotonic()
    tree = parse(sql)
    if tree is None:
        return []
    seen = {render(tree)}
    frontier: list[tuple[exp.Expr, SearchCandidate]] = [(tree, SearchCandidate(render(tree), (), float("inf")))]
    found: list[SearchCandidate] = []
    for level in range(1, depth + 1):
        children: list[tuple[exp.Expr, SearchCandidate]] = []
        for parent_tree, parent in frontier:
            for rule in rules:
                name = rule_name(rule)
                if name in parent.rules:
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    stats.out_of_time = True
                    break
                with collecting() as reasons:
                    child = apply_rule(rule, parent_tree, catalog)
                if child is None:
                    if level == 1 and reasons:
                        stats.declined[name] = "; ".join(reasons)
                    continue
                try:
                    text = render(child)
                except SqlglotError:
                    continue
                if text in seen:
                    continue
                seen.add(text)
                estimate = cost(text)
                stats.planned += 1
                if estimate is None:
                    stats.unplannable += 1
                    continue
                if level > 1 and estimate >= parent.cost:
                    stats.pruned += 1
                    continue
                children.append((child, SearchCandidate(text, parent.rules + (name,), estimate)))
        found.extend(candidate for _, candidate in children)
        frontier = sorted(children, key=lambda item: (item[1].cost, len(item[1].rules)))[:width]
        if not frontier or stats.out_of_time:
            break
    stats.elapsed_s = time.monotonic() - started
    return sorted(found, key=lambda c: (c.cost, len(c.rules)))


def apply_rule(rule: RuleFunction, tree: exp.Expr, catalog: Catalog) -> exp.Expr | None:
    """The rule's rewrite of ``tree``, or None; a rule that trips over an unforeseen AST shape costs
    one candidate, not the request."""
    try:
        return rule(tree, catalog)
    except Exception:
        logger.debug("rule %s failed", rule_name(rule), exc_info=True)
        return None


def rule_name(rule: object) -> str:
    return str(getattr(rule, "__name__", rule))


def render(tree: exp.Expr) -> str:
    return tree.sql(dialect="postgres", comments=False)
