"""Apply the rule registry to one SQL statement and collect distinct candidate rewrites."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import SqlglotError

from sidecar.catalog import Catalog
from sidecar.rules._scope import parse
from sidecar.rules.search import apply_rule, render


@dataclass(frozen=True)
class RuleCandidate:
    sql: str
    """The rewritten statement, PostgreSQL dialect."""
    rules: tuple[str, ...]
    """Names of the rules applied, in order."""


def rewrite_candidates(sql: str, catalog: Catalog) -> list[RuleCandidate]:
    """Each rule alone, then all fired rules composed; deduplicated by SQL text.

    Unparseable or unsupported SQL gives an empty list, never an exception.

    >>> rewrite_candidates("SELECT 1", Catalog())
    []
    >>> rewrite_candidates("SELEC nonsense (", Catalog())
    []
    """
    from sidecar.rules import RULES

    tree = parse(sql)
    if tree is None:
        return []
    original = render(tree)

    candidates: list[RuleCandidate] = []
    seen = {original}
    fired: list[str] = []
    composed = tree
    composed_names: list[str] = []
    for rule in RULES:
        alone = apply_rule(rule, tree, catalog)
        if alone is not None:
            fired.append(rule.__name__)
            _add(candidates, seen, alone, (rule.__name__,))
        stacked = apply_rule(rule, composed, catalog)
        if stacked is not None:
            composed = stacked
            composed_names.append(rule.__name__)
    if len(composed_names) > 1:
        _add(candidates, seen, composed, tuple(composed_names))
    return candidates


def _add(
    candidates: list[RuleCandidate], seen: set[str], tree: exp.Expr, rules: tuple[str, ...]
) -> None:
    try:
        text = render(tree)
    except SqlglotError:
        return
    if text not in seen:
        seen.add(text)
        candidates.append(RuleCandidate(text, rules))
