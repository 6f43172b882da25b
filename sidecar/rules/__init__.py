"""Targeted rewrite rules for anti-patterns PostgreSQL's planner does not fix itself.

One transformation per module, each a function named after its module with the signature
``rule(expression, catalog) -> Expression | None`` (None: the rule did not fire). ``RULES`` is the
order in which ``runner.rewrite_candidates`` composes them.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sidecar.catalog import Catalog
from sidecar.rules.decorrelate_scalar_aggregates import decorrelate_scalar_aggregates
from sidecar.rules.distinct_join_to_exists import distinct_join_to_exists
from sidecar.rules.extract_common_subexpressions import extract_common_subexpressions
from sidecar.rules.not_in_to_not_exists import not_in_to_not_exists
from sidecar.rules.or_to_union_all import or_to_union_all
from sidecar.rules.sargable_predicates import sargable_predicates
from sidecar.rules.window_to_group_by import window_to_group_by

Rule = Callable[[exp.Expression, Catalog], "exp.Expression | None"]

RULES: tuple[Rule, ...] = (
    sargable_predicates,
    decorrelate_scalar_aggregates,
    distinct_join_to_exists,
    not_in_to_not_exists,
    window_to_group_by,
    extract_common_subexpressions,
    or_to_union_all,
)

__all__ = ["RULES", "Rule"]
