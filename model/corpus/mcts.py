"""SQL-MCTS's search maths (LASER §4.2, Eq. 1-5), free of I/O: the tree, UCT, the reward, backpropagation.

The search (``model.corpus.search``) owns the database work; this module only decides. Every
formula is the paper's:

- Eq. 1, selection: ``argmax_i Q(v_i)/N(v_i) + c * sqrt(2 ln N(v) / N(v_i))`` over the *valid*
  children C(v) (an invalid or timed-out child is never descended into: its equivalence is
  unknown or false, so nothing under it could be kept).
- Eq. 2, validity Φ: the variant ran and its result equals the seed's (the verifier decides).
- Eq. 3, structural distance Δ: tree edit distance over the larger tree's size (``structure``).
- Eq. 4, ``Rs(v) = (Δ(v, parent) + Δ(v, seed)) / 2``.
- Eq. 5, reward: ρ when invalid; γ = λt when the variant hit the time limit (its result is
  unknown, so it gets the saturated time term and no structural bonus); otherwise
  ``λt tanh(α log(Tv/T0)) + λs Rs(v)``.

The paper gives no values for c, ρ, λt, λs or α; the defaults below are ours (c = 1 is UCB1's
exploration term; α = 1 puts a 2x slowdown at tanh(log 2) = 0.6 and 10x at 0.98 of λt).
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RewardConfig:
    """Eq. 5's constants (and Eq. 1's c)."""

    invalid: float = -1.0
    """ρ: the variant failed, or its result differs from the seed's."""
    time_weight: float = 1.0
    """λt (and γ = λt for a variant that hit the time limit)."""
    structure_weight: float = 0.5
    """λs."""
    alpha: float = 1.0
    """α inside tanh(α log(Tv/T0))."""
    exploration: float = 1.0
    """c in Eq. 1."""

    def __post_init__(self) -> None:
        if self.invalid >= 0:
            raise ValueError("the invalid reward ρ must be negative")
        if self.time_weight <= 0 or self.structure_weight < 0 or self.alpha <= 0 or self.exploration < 0:
            raise ValueError("λt and α must be positive, λs and c non-negative")


@dataclass(frozen=True)
class Evaluation:
    """What execution said about one variant, relative to its seed (the Simulation's input)."""

    valid: bool
    """Φ(v): it ran and returned the seed's result (or hit the time limit: see `timed_out`)."""
    timed_out: bool = False
    """It ran past the time limit Tmax: its result is unknown (reward γ)."""
    slowdown: float = 1.0
    """Tv / T0, from timed runs interleaved with the seed's."""
    detail: str = ""


def reward(evaluation: Evaluation, structural_score: float, config: RewardConfig = RewardConfig()) -> float:
    """Eq. 5.

    >>> round(reward(Evaluation(valid=True, slowdown=2.0), 0.2), 4)
    0.7
    >>> reward(Evaluation(valid=False), 0.9)
    -1.0
    >>> reward(Evaluation(valid=True, timed_out=True), 0.9)
    1.0
    >>> round(reward(Evaluation(valid=True, slowdown=0.5), 0.0), 4)   # a faster variant is penalized
    -0.6
    """
    if evaluation.timed_out:
        return config.time_weight
    if not evaluation.valid:
        return config.invalid
    slowdown = max(evaluation.slowdown, 1e-9)
    return (config.time_weight * math.tanh(config.alpha * math.log(slowdown))
            + config.structure_weight * structural_score)


def structural_score(to_parent: float, to_seed: float) -> float:
    """Eq. 4: the mean of the distances to the parent and to the seed.

    >>> structural_score(0.1, 0.3)
    0.2
    """
    return (to_parent + to_seed) / 2


@dataclass(eq=False)
class Node:
    """One SQL variant in a seed's tree. The root is the seed itself."""

    sql: str
    parent: Node | None = None
    strategy: str | None = None
    """The transformation that made it from its parent (None for the seed)."""
    children: list[Node] = field(default_factory=list)
    visits: int = 0
    total_reward: float = 0.0
    evaluation: Evaluation | None = None
    score: float = 0.0
    """Its own reward (Eq. 5), kept apart from the cumulative Q it gathers from its subtree."""
    exhausted: bool = False
    """No strategy left that fires on it: it cannot be expanded again."""
    tried: set[str] = field(default_factory=set)
    """Strategies already applied to it (each expansion tries new ones)."""

    @property
    def path(self) -> tuple[str, ...]:
        """The strategies applied from the seed to this node, in order."""
        strategies: list[str] = []
        node: Node | None = self
        while node is not None and node.strategy is not None:
            strategies.append(node.strategy)
            node = node.parent
        return tuple(reversed(strategies))

    @property
    def depth(self) -> int:
        return len(self.path)

    @property
    def expandable(self) -> bool:
        """Valid (the seed always is), within the time limit, and not exhausted."""
        if self.exhausted:
            return False
        return self.evaluation is None or (self.evaluation.valid and not self.evaluation.timed_out)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


def uct(child: Node, parent_visits: int, exploration: float) -> float:
    """Eq. 1's score of one child; an unvisited child comes first.

    >>> parent = Node("q", visits=10)
    >>> a = Node("a", parent, visits=5, total_reward=2.5)
    >>> round(uct(a, parent.visits, 1.0), 4)
    1.4597
    >>> uct(Node("b", parent), parent.visits, 1.0)
    inf
    """
    if child.visits == 0:
        return math.inf
    return child.total_reward / child.visits + exploration * math.sqrt(2 * math.log(parent_visits) / child.visits)


def select(root: Node, exploration: float, rng: random.Random) -> Node | None:
    """Selection: descend by Eq. 1 through expandable nodes to one whose subtree can still grow.

    A node with expandable children is passed through; one without (a leaf, or every child
    invalid, timed out or exhausted) is returned when it can itself be expanded. Ties are broken
    at random. None: nothing in the tree can be expanded any more.

    >>> root = Node("seed")
    >>> select(root, 1.0, random.Random(0)) is root
    True
    >>> root.exhausted = True
    >>> select(root, 1.0, random.Random(0)) is None
    True
    """
    node = root
    while True:
        candidates = [child for child in node.children if _growable(child)]
        if not candidates:
            return node if node.expandable else None
        parent_visits = max(node.visits, 1)
        best = max(uct(child, parent_visits, exploration) for child in candidates)
        node = rng.choice([child for child in candidates if uct(child, parent_visits, exploration) == best])


def _growable(node: Node) -> bool:
    return node.expandable or any(_growable(child) for child in node.children)


def backpropagate(node: Node, value: float) -> None:
    """Add one visit and the reward to the node and every ancestor up to the seed.

    >>> root = Node("seed"); child = Node("v", root); root.children.append(child)
    >>> backpropagate(child, 0.5); backpropagate(child, 0.25)
    >>> (root.visits, root.total_reward, child.visits)
    (2, 0.75, 2)
    """
    current: Node | None = node
    while current is not None:
        current.visits += 1
        current.total_reward += value
        current = current.parent
