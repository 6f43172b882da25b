"""The MCTS loop of SQL-MCTS (LASER §4.2) for one seed: select, expand, simulate, backpropagate.

Database work is injected: ``evaluate`` takes a batch of variant texts and returns one
``Evaluation`` each (``model.corpus.evaluate`` does it with the verifier's worker pool, all
variants of an expansion dispatched at once). Results are cached by the variant's normalized
parse, so a variant reached along two paths is executed once.

Expansion: the selected node gets up to ``width`` children, each from a strategy chosen at random
among those not yet used on its path (LASER's history-aware filter) and not yet tried on the
node; a strategy that does not fire is passed over. A node on which nothing fires any more, or at
``max_depth``, is exhausted.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from model.corpus import structure
from model.corpus.mcts import Evaluation, Node, RewardConfig, backpropagate, reward, select, structural_score
from model.corpus.slowdowns import SLOWDOWNS, Slowdown
from sidecar.catalog import Catalog

Evaluate = Callable[[Sequence[str]], list[Evaluation]]


@dataclass(frozen=True)
class SearchConfig:
    iterations: int = 8
    """Selection-expansion rounds per seed."""
    width: int = 3
    """Children per expansion."""
    max_depth: int = 4
    """Transformations along one path at most."""
    rewards: RewardConfig = field(default_factory=RewardConfig)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.width < 1 or self.max_depth < 1:
            raise ValueError("iterations, width and max_depth must be at least 1")


@dataclass
class SearchStats:
    expansions: int = 0
    variants: int = 0
    """Distinct variants made (each evaluated once)."""
    cache_hits: int = 0
    duplicates: int = 0
    """Variants equal to a node already in the tree (not added again)."""


def grow(seed: str, catalog: Catalog, evaluate: Evaluate, rng: random.Random,
         config: SearchConfig = SearchConfig(), strategies: Sequence[Slowdown] = SLOWDOWNS,
         cache: dict[str, Evaluation] | None = None) -> tuple[Node, SearchStats]:
    """The search tree grown from ``seed``; its root is the seed (valid by definition).

    ``cache``: evaluations by normalized parse, shared across calls for the same seed (e.g. a
    resumed run); a new one is used when None.
    """
    root = Node(seed, evaluation=Evaluation(valid=True))
    trees = {structure.normalized(seed): root}
    parsed = {id(root): structure.parse(seed)}
    cache = {} if cache is None else cache
    stats = SearchStats()
    by_name = {s.__name__: s for s in strategies}
    for _ in range(config.iterations):
        leaf = select(root, config.rewards.exploration, rng)
        if leaf is None:
            break
        made = _expand(leaf, parsed[id(leaf)], catalog, by_name, config, rng)
        stats.expansions += 1
        children: list[tuple[Node, str]] = []
        for strategy, tree in made:
            key = structure.normalized(tree)
            if key in trees:
                stats.duplicates += 1
                continue
            child = Node(tree.sql(dialect="postgres"), parent=leaf, strategy=strategy)
            leaf.children.append(child)
            trees[key] = child
            parsed[id(child)] = tree
            children.append((child, key))
        pending = sorted({key for _, key in children if key not in cache})
        stats.cache_hits += len(children) - len(pending)
        if pending:
            for key, evaluation in zip(pending, evaluate(pending), strict=True):
                cache[key] = evaluation
            stats.variants += len(pending)
        seed_tree = parsed[id(root)]
        for child, key in children:
            child.evaluation = cache[key]
            tree = parsed[id(child)]
            score = structural_score(structure.distance(tree, parsed[id(leaf)]), structure.distance(tree, seed_tree))
            child.score = reward(child.evaluation, score, config.rewards)
            backpropagate(child, child.score)
    return root, stats


def _expand(node: Node, tree: exp.Expr, catalog: Catalog, strategies: dict[str, Slowdown], config: SearchConfig,
            rng: random.Random) -> list[tuple[str, exp.Expr]]:
    if node.depth >= config.max_depth:
        node.exhausted = True
        return []
    used = set(node.path)
    untried = [name for name in strategies if name not in used and name not in node.tried]
    rng.shuffle(untried)
    made: list[tuple[str, exp.Expr]] = []
    for name in untried:
        if len(made) == config.width:
            break
        node.tried.add(name)
        result = strategies[name](tree, catalog)
        if result is not None:
            made.append((name, result))
    if len(made) < config.width:
        node.exhausted = True  # every remaining strategy was tried on it
    return made


def slow_nodes(root: Node, minimum_slowdown: float, timed_out: bool = False) -> list[Node]:
    """Every variant in the tree that was valid and at least ``minimum_slowdown`` times slower than
    the seed in the simulation, and with ``timed_out`` also those that hit the time limit (their
    result is still to be compared, on instances: the candidates for the corpus, re-verified)."""
    found = []
    for node in root.walk():
        evaluation = node.evaluation
        if node is root or evaluation is None or not evaluation.valid:
            continue
        if evaluation.timed_out:
            if timed_out:
                found.append(node)
        elif evaluation.slowdown >= minimum_slowdown:
            found.append(node)
    return found
