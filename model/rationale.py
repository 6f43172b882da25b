"""Short rationales for SFT targets, written from a corpus pair's transformation path (LASER §5.1
distils reasoning traces from a teacher model; here the path already says which anti-pattern was
introduced, so the rationale names it, in the direction the model must go, and why PostgreSQL runs
the fast form faster). No teacher model is needed, and nothing here can be wrong about the pair:
the sentences describe the transformations, whose equivalence the verifier checked.
"""
from __future__ import annotations

from collections.abc import Sequence

UNDO: dict[str, str] = {
    "aggregate_after_join": "aggregate the joined table per join key before the join, so the join sees one row "
                            "per key instead of every detail row",
    "correlate_grouped_aggregates": "compute the per-key aggregates once in a grouped derived table and join it, "
                                    "instead of one correlated subquery per outer row",
    "drop_semijoin_reductions": "restrict the grouped derived table to the keys the outer query keeps "
                                "(key IN (SELECT ... WHERE <the outer filters>)), so it aggregates only those groups",
    "exists_to_count": "test existence with EXISTS, which stops at the first match and can become a semi-join, "
                       "instead of counting every match in a correlated COUNT(*)",
    "exists_to_distinct_join": "filter with EXISTS (a semi-join) instead of joining and removing the duplicates "
                               "with DISTINCT",
    "group_by_to_window": "aggregate with GROUP BY instead of window aggregates over every row followed by DISTINCT",
    "having_to_filtered_window": "aggregate with GROUP BY and filter the groups with HAVING instead of filtering "
                                 "window aggregates over every row of a derived table and removing the duplicates",
    "in_to_count": "filter with IN (a hashed semi-join) instead of a correlated COUNT(*) evaluated per outer row",
    "inline_ctes": "compute the repeated subquery once in a CTE instead of repeating its body at every reference",
    "join_to_exists": "join the filtering table directly instead of probing it in a correlated EXISTS",
    "join_to_scalar_subquery": "join the table once instead of fetching each of its columns in a correlated scalar "
                               "subquery per row",
    "joins_to_commas": "write the joins explicitly with their ON conditions next to each table",
    "lateral_probe_to_exists": "probe the index with a LATERAL subquery and LIMIT 1, which PostgreSQL cannot turn "
                               "into a full hash of the table",
    "materialize_ctes": "let PostgreSQL inline the CTE used once (no MATERIALIZED), so filters and joins reach "
                        "inside it",
    "not_exists_to_not_in": "use NOT EXISTS (an anti-join) instead of NOT IN, which PostgreSQL cannot turn into "
                            "an anti-join",
    "pull_predicates_out_of_ctes": "filter inside the CTE, so it produces only the rows its readers keep",
    "rematerialize_shared_ctes": "mark the CTE read by several references NOT MATERIALIZED, so each reference "
                                 "gets its own copy with its own filters pushed in",
    "split_merged_aggregates": "compute the filtered aggregates in one pass with FILTER instead of one scan per "
                               "aggregate",
    "union_all_to_or": "split the OR into UNION ALL branches that can each use an index",
    "wrap_filtered_columns": "compare the bare columns, so the filters can use indexes and the planner's "
                             "statistics, instead of expressions around them",
    "model_mutation": "remove the inefficiency a model introduced",
}


def rationale(path: Sequence[str]) -> str:
    """One short paragraph: what to undo, last transformation first.

    >>> text = rationale(("in_to_count", "materialize_ctes"))
    >>> text.startswith("To make this query faster: let PostgreSQL inline the CTE"), text.endswith("per outer row.")
    (True, True)
    >>> rationale(())
    ''
    """
    steps = [UNDO.get(name, f"undo {name.replace('_', ' ')}") for name in reversed(path)]
    if not steps:
        return ""
    return "To make this query faster: " + "; and ".join(steps) + "."
