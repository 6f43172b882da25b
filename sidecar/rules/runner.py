"""Apply the rule registry to one SQL statement and collect distinct candidate rewrites."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sidecar.catalog import Catalog

logger = logging.getLogger(__name__)


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

    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except SqlglotError:
        return []
    if tree is None:
        return []
    original = _render(tree)

    candidates: list[RuleCandidate] = []
    seen = {original}
    fired: list[str] = []
    composed = tree
    composed_names: list[str] = []
    for rule in RULES:
        alone = _apply(rule, tree, catalog)
        if alone is not None:
            fired.append(rule.__name__)
            _add(candidates, seen, alone, (rule.__name__,))
        stacked = _apply(rule, composed, catalog)
        if stacked is not None:
            composed = stacked
            composed_names.append(rule.__name__)
    if len(composed_names) > 1:
        _add(candidates, seen, composed, tuple(composed_names))
    return candidates


def _apply(rule: object, tree: exp.Expression, catalog: Catalog) -> exp.Expression | None:
    # A rule that trips over an unforeseen AST shape must cost one candidate, not the request.
    try:
        return rule(tree, catalog)  # type: ignore[operator, no-any-return]
    except Exception:  # noqa: BLE001
        logger.debug("rule %s failed", getattr(rule, "__name__", rule), exc_info=True)
        return None


def _render(tree: exp.Expression) -> str:
    return tree.sql(dialect="postgres", comments=False)


def _add(
    candidates: list[RuleCandidate], seen: set[str], tree: exp.Expression, rules: tuple[str, ...]
) -> None:
    try:
        text = _render(tree)
    except SqlglotError:
        return
    if text not in seen:
        seen.add(text)
        candidates.append(RuleCandidate(text, rules))
