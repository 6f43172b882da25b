"""The reverse optimizer (LASER §4.2, rule-guided expansion): cost-increasing transformations
that keep a query's result.

One transformation per module, each a function named after its module with the rules'
signature ``slowdown(expression, catalog) -> Expression | None`` (None: its precondition failed,
it did not fire). Each module says why its form is slower on PostgreSQL, why it is equivalent,
and which rules-backend rule (if any) undoes it. ``SLOWDOWNS`` is the registry, in a fixed order
so that the same random seed picks the same strategies.

The search does not trust these arguments: every variant is executed and compared with its seed
by the verifier before it counts.
"""
from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from model.corpus.slowdowns.aggregate_after_join import aggregate_after_join
from model.corpus.slowdowns.correlate_grouped_aggregates import correlate_grouped_aggregates
from model.corpus.slowdowns.drop_semijoin_reductions import drop_semijoin_reductions
from model.corpus.slowdowns.exists_to_count import exists_to_count
from model.corpus.slowdowns.exists_to_distinct_join import exists_to_distinct_join
from model.corpus.slowdowns.group_by_to_window import group_by_to_window
from model.corpus.slowdowns.having_to_filtered_window import having_to_filtered_window
from model.corpus.slowdowns.in_to_count import in_to_count
from model.corpus.slowdowns.inline_ctes import inline_ctes
from model.corpus.slowdowns.join_to_exists import join_to_exists
from model.corpus.slowdowns.join_to_scalar_subquery import join_to_scalar_subquery
from model.corpus.slowdowns.joins_to_commas import joins_to_commas
from model.corpus.slowdowns.lateral_probe_to_exists import lateral_probe_to_exists
from model.corpus.slowdowns.materialize_ctes import materialize_ctes
from model.corpus.slowdowns.not_exists_to_not_in import not_exists_to_not_in
from model.corpus.slowdowns.pull_predicates_out_of_ctes import pull_predicates_out_of_ctes
from model.corpus.slowdowns.rematerialize_shared_ctes import rematerialize_shared_ctes
from model.corpus.slowdowns.split_merged_aggregates import split_merged_aggregates
from model.corpus.slowdowns.union_all_to_or import union_all_to_or
from model.corpus.slowdowns.wrap_filtered_columns import wrap_filtered_columns
from sidecar.catalog import Catalog

Slowdown = Callable[[exp.Expr, Catalog], "exp.Expr | None"]

SLOWDOWNS: tuple[Slowdown, ...] = (
    exists_to_count,
    in_to_count,
    not_exists_to_not_in,
    join_to_exists,
    exists_to_distinct_join,
    join_to_scalar_subquery,
    correlate_grouped_aggregates,
    aggregate_after_join,
    group_by_to_window,
    having_to_filtered_window,
    lateral_probe_to_exists,
    union_all_to_or,
    split_merged_aggregates,
    inline_ctes,
    pull_predicates_out_of_ctes,
    materialize_ctes,
    wrap_filtered_columns,
    joins_to_commas,
    drop_semijoin_reductions,
    rematerialize_shared_ctes,
)

BY_NAME: dict[str, Slowdown] = {slowdown.__name__: slowdown for slowdown in SLOWDOWNS}

INVERSE_OF: dict[str, str] = {
    "sargable_predicates": "wrap_filtered_columns",
    "decorrelate_scalar_aggregates": "correlate_grouped_aggregates",
    "distinct_join_to_exists": "exists_to_distinct_join",
    "exists_to_lateral_probe": "lateral_probe_to_exists",
    "not_in_to_not_exists": "not_exists_to_not_in",
    "window_to_group_by": "group_by_to_window",
    "filtered_window_to_having": "having_to_filtered_window",
    "extract_common_subexpressions": "inline_ctes",
    "push_predicates_into_ctes": "pull_predicates_out_of_ctes",
    "inline_shared_ctes": "rematerialize_shared_ctes",
    "merge_scalar_aggregates": "split_merged_aggregates",
    "preaggregate_before_join": "aggregate_after_join",
    "semijoin_reduce_derived_tables": "drop_semijoin_reductions",
    "or_to_union_all": "union_all_to_or",
    "join_or_to_union_all": "union_all_to_or",
    "explicit_join_order": "joins_to_commas",
}
"""Rules-backend rule → the transformation that makes what it undoes (so a model trained on the
corpus learns at least what the rules do). The others are the model's headroom: no rule undoes them."""

__all__ = ["BY_NAME", "INVERSE_OF", "SLOWDOWNS", "Slowdown"]
