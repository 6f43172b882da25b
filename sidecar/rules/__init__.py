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
from sidecar.rules.exists_to_lateral_probe import exists_to_lateral_probe
from sidecar.rules.explicit_join_order import explicit_join_order
from sidecar.rules.extract_common_subexpressions import extract_common_subexpressions
from sidecar.rules.filtered_window_to_having import filtered_window_to_having
from sidecar.rules.inline_shared_ctes import inline_shared_ctes
from sidecar.rules.join_or_to_union_all import join_or_to_union_all
from sidecar.rules.merge_scalar_aggregates import merge_scalar_aggregates
from sidecar.rules.not_in_to_not_exists import not_in_to_not_exists
from sidecar.rules.or_to_union_all import or_to_union_all
from sidecar.rules.preaggregate_before_join import preaggregate_before_join
from sidecar.rules.push_predicates_into_ctes import push_predicates_into_ctes
from sidecar.rules.sargable_predicates import sargable_predicates
from sidecar.rules.semijoin_reduce_derived_tables import semijoin_reduce_derived_tables
from sidecar.rules.window_to_group_by import window_to_group_by

Rule = Callable[[exp.Expr, Catalog], "exp.Expr | None"]

RULES: tuple[Rule, ...] = (
    sargable_predicates,
    decorrelate_scalar_aggregates,
    distinct_join_to_exists,
    exists_to_lateral_probe,
    not_in_to_not_exists,
    window_to_group_by,
    filtered_window_to_having,
    extract_common_subexpressions,
    push_predicates_into_ctes,
    inline_shared_ctes,
    merge_scalar_aggregates,
    preaggregate_before_join,
    semijoin_reduce_derived_tables,
    or_to_union_all,
    join_or_to_union_all,
    explicit_join_order,
)

__all__ = ["RULES", "Rule"]
