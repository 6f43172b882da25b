"""Plan hints (SPA §3.2 cardinality flow, E3 linearized plan) and plan divergence (SPA §3.4).

Hand-written plans pin the definitions; the demo database's real EXPLAIN output checks that they
say the right thing about real plans.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sidecar.prompting.hints import CATEGORIES, MAX_CONDITION_CHARS, Hint, linearize, plan_hints, render_hints
from sidecar.verify.plans import MAX_DIFFERENCES, divergence, signature, walk

QUERIES = sorted((Path(__file__).resolve().parent.parent / "sql" / "demo" / "queries").glob("*.sql"))


def scan(relation: str, rows: float, removed: float = 0, loops: float = 1, alias: str | None = None,
         cost: float = 1.0, fields: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    """A scan node as EXPLAIN ANALYZE reports it (rows and removed rows are per-loop averages)."""
    node = {"Node Type": "Seq Scan", "Relation Name": relation, "Alias": alias or relation, "Plan Rows": rows,
            "Actual Rows": rows, "Actual Loops": loops, "Total Cost": cost, **(fields or {}), **more}
    if removed:
        node["Rows Removed by Filter"] = removed
    return node


def op(kind: str, rows: float, *children: dict[str, Any], loops: float = 1, cost: float = 1.0,
       fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """An inner node; children get Outer/Inner relationships unless they carry one already."""
    plans = []
    for position, child in enumerate(children):
        child = dict(child)
        child.setdefault("Parent Relationship", "Outer" if position == 0 else "Inner")
        plans.append(child)
    node = {"Node Type": kind, "Plan Rows": rows, "Actual Rows": rows, "Actual Loops": loops, "Total Cost": cost,
            **(fields or {})}
    if plans:
        node["Plans"] = plans
    return node


def by_category(hints: list[Hint], category: str) -> list[Hint]:
    return [h for h in hints if h.category == category]


# --- cardinality flow: definitions ------------------------------------------------------------


def test_rows_in_is_children_output_and_scans_count_removed_rows() -> None:
    plan = op("Hash Join", 900, scan("orders", 900, removed=9100, alias="o", Filter="(status = 'x'::text)"),
              op("Hash", 100, scan("users", 100, alias="u")), cost=100.0, fields={"Hash Cond": "(o.user_id = u.id)"})
    hints = plan_hints(plan)
    join, = by_category(hints, "Join")
    assert (join.rows_in, join.rows_out) == (1000, 900)  # 900 from orders + 100 through the Hash
    assert join.target == "o ⋈ u" and join.condition == "on (o.user_id = u.id)"
    filtered, = by_category(hints, "Filter")
    assert (filtered.target, filtered.rows_in, filtered.rows_out) == ("orders o", 10000, 900)
    assert filtered.change == "reduce by 91.0%" and filtered.actual


def test_loops_multiply_actual_rows() -> None:
    inner = scan("events", 3, removed=7, loops=50, alias="e", cost=10.0, fields={
        "Node Type": "Index Scan", "Index Name": "events_user_id_idx", "Index Cond": "(user_id = u.id)",
        "Filter": "(event_type = 'buy'::text)"})
    plan = op("Nested Loop", 150, scan("users", 50, alias="u"), inner, cost=600.0)
    hints = plan_hints(plan)
    loop, = by_category(hints, "Nested Loop")
    assert (loop.rows_in, loop.rows_out, loop.loops) == (50 + 150, 150, 50)
    probe, = by_category(hints, "Join with Filter")
    assert (probe.rows_in, probe.rows_out, probe.loops) == (500, 150, 50)
    assert probe.change == "reduce by 70.0%"
    text = render_hints(hints)
    assert "inner side ran 50 times, 3 rows per outer row" in text
    assert "50 index probes returned 10 rows each, the filter kept 30.0%" in text


def test_plain_explain_estimates_loops_and_parallel_copies() -> None:
    def plain(node: dict[str, Any]) -> dict[str, Any]:
        node = {k: v for k, v in node.items() if not k.startswith("Actual")}
        if "Plans" in node:
            node["Plans"] = [plain(c) for c in node["Plans"]]
        return node

    inner = scan("events", 4, alias="e", fields={"Node Type": "Index Scan", "Index Cond": "(user_id = u.id)"})
    loop = plain(op("Nested Loop", 40, scan("users", 10, alias="u"), inner))
    assert by_category(plan_hints(loop), "Nested Loop")[0].rows_in == 10 + 10 * 4
    # Under Gather each of 2 workers and the leader (0.4 of a worker) returns Plan Rows rows.
    gathered = plain(op("Gather", 240, scan("orders", 100, Filter="(x > 1)", fields={"Parallel Aware": True}),
                        fields={"Workers Planned": 2}))
    hint, = plan_hints(gathered, table_rows={"orders": 10000})
    assert (hint.operator, hint.rows_in, hint.rows_out) == ("Parallel Seq Scan", 10000, 240)
    assert plan_hints(gathered)[0].change == "input unknown"  # rows read unknown without table sizes
    assert "Gather rows~240" in linearize(gathered)


def test_side_inputs_are_not_rows_in_and_run_per_row() -> None:
    subplan = op("Aggregate", 1, scan("orders", 50, alias="o", fields={"Node Type": "Index Only Scan",
                                                                    "Index Cond": "(user_id = u.id)"}, loops=20),
                 loops=20, fields={"Parent Relationship": "SubPlan", "Subplan Name": "SubPlan 1"})
    initplan = op("Result", 1, fields={"Parent Relationship": "InitPlan", "Subplan Name": "InitPlan 1 (returns $0)"})
    plan = op("Seq Scan", 20, initplan, subplan, fields={"Relation Name": "users", "Alias": "u", "Filter": "is_active",
                                                      "Rows Removed by Filter": 5})
    hints = plan_hints(plan)
    users, = [h for h in hints if h.target == "users u"]
    assert (users.rows_in, users.rows_out) == (25, 20)  # the subplans feed no rows in
    aggregate, = by_category(hints, "Aggregation")
    assert (aggregate.rows_in, aggregate.rows_out, aggregate.loops) == (1000, 20, 20)
    assert aggregate.scopes == ("SubPlan 1",)
    # Plain EXPLAIN: a SubPlan in the target list runs once per row its parent emits.
    estimated = plan_hints(_without_actuals(plan))
    assert by_category(estimated, "Aggregation")[0].loops == 20


def _without_actuals(node: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if not k.startswith("Actual") and not k.startswith("Rows Removed")}
    if "Plans" in node:
        out["Plans"] = [_without_actuals(c) for c in node["Plans"]]
    return out


def test_the_five_categories_and_ranking_by_absolute_reduction() -> None:
    lookup = scan("events", 1, removed=9, loops=100, alias="e", fields={
        "Node Type": "Index Scan", "Index Cond": "(user_id = o.user_id)", "Filter": "(page = '/'::text)"})
    plan = op("Aggregate", 10,
              op("Hash Join", 200,
                 op("Nested Loop", 100, scan("orders", 100, removed=900, alias="o", Filter="(amount > 5)"), lookup),
                 op("Hash", 40, scan("users", 40, removed=60, alias="u", Filter="is_active")),
                 fields={"Hash Cond": "(o.user_id = u.id)"}),
              fields={"Strategy": "Hashed", "Group Key": ["u.country"]})
    hints = plan_hints(plan)
    assert [h.category for h in hints] == ["Nested Loop", "Join", "Join with Filter", "Filter", "Filter",
                                           "Aggregation"]
    assert [h.category for h in hints] == sorted((h.category for h in hints), key=CATEGORIES.index)
    orders, users = by_category(hints, "Filter")
    assert (orders.target, users.target) == ("orders o", "users u")  # 900 removed before 60
    aggregate, = by_category(hints, "Aggregation")
    assert aggregate.operator == "HashAggregate" and aggregate.condition == "by u.country"
    join, = by_category(hints, "Join")
    assert (join.rows_in, join.rows_out, join.change) == (140, 200, "expand by 1.4x")


@pytest.mark.parametrize(("alias", "index_cond", "category"), [
    ("u", "(id = o.user_id)", "Join with Filter"),
    ("u", '(id = "Order Lines".user_id)', "Join with Filter"),
    ("u", "(u.id = 42)", "Filter"),
    ("u", "(email = 'first.last@example.com'::text)", "Filter"),
    ("u", "(signup_date > '2024-01-01'::date)", "Filter"),
])
def test_join_with_filter_needs_an_index_condition_on_another_relation(alias: str, index_cond: str,
                                                                       category: str) -> None:
    probe = scan("users", 1, removed=4, alias=alias, fields={"Node Type": "Index Scan", "Index Cond": index_cond,
                                                        "Filter": "is_active"})
    hint, = plan_hints(probe)
    assert hint.category == category and hint.change == "reduce by 80.0%"


def test_expander_label() -> None:
    plan = op("Hash Join", 5000, scan("products", 100, alias="p"), op("Hash", 100, scan("products", 100, alias="q")),
              cost=100.0, fields={"Hash Cond": "(p.category = q.category)"})
    join, = plan_hints(plan)
    assert join.change == "expand by 25.0x" and join.reduction == -4800


def test_pass_through_nodes_are_pruned_but_subplan_roots_and_costly_scans_kept() -> None:
    cheap = scan("users", 10, alias="u", cost=1.0)
    costly = scan("events", 1000, alias="e", cost=900.0)
    subplan = op("Limit", 1, scan("orders", 1, alias="o", loops=10, fields={"Node Type": "Index Scan",
                                                                        "Index Cond": "(user_id = u.id)"}),
                 loops=10, fields={"Parent Relationship": "SubPlan", "Subplan Name": "SubPlan 1"})
    plan = op("Sort", 1010, op("Append", 1010, {**cheap, "Parent Relationship": "Member"},
                               {**costly, "Parent Relationship": "Member"}, subplan, cost=990.0), cost=1000.0)
    hints = plan_hints(plan)
    assert {h.target for h in hints} == {"events e", "orders o"}
    assert all(h.change == "pass-through" for h in hints)
    assert by_category(hints, "Filter")[1].scopes == ("SubPlan 1",)  # the Limit hands its place down


def test_identical_operators_merge_but_not_with_their_ancestors() -> None:
    def branch(suffix: str, name: str) -> dict[str, Any]:
        return op("Aggregate", 1, op("Hash Join", 10, scan("orders", 10, alias=f"o{suffix}"),
                                     op("Hash", 5, scan("products", 5, alias=f"p{suffix}")),
                                     fields={"Hash Cond": f"(o{suffix}.product_id = p{suffix}.id)"}),
                  fields={"Parent Relationship": "InitPlan", "Subplan Name": name})
    plan = op("Result", 1, branch("_1", "InitPlan 1 (returns $0)"), branch("_2", "InitPlan 2 (returns $1)"),
              fields={"One-Time Filter": "($0 > $1)"})
    joins = by_category(plan_hints(plan), "Join")
    assert len(joins) == 1 and joins[0].count == 2 and joins[0].scopes == ("InitPlan 1", "InitPlan 2")
    nested = op("Unique", 5, op("Unique", 10, scan("t", 20)), cost=100.0)
    assert [h.count for h in plan_hints(nested)] == [1, 1]


def test_max_items_keeps_the_largest_changes_and_text_is_bounded() -> None:
    long_filter = "(" + " AND ".join(f"c{i} = {i}" for i in range(200)) + ")"
    scans = [{**scan(f"t{i}", 10, removed=i * 100, Filter=long_filter), "Parent Relationship": "Member"}
             for i in range(1, 40)]
    plan = op("Append", 390, *scans)
    hints = plan_hints(plan, max_items=5)
    assert [h.target for h in hints] == ["t39", "t38", "t37", "t36", "t35"]
    text = render_hints(hints)
    assert text == render_hints(plan_hints(plan, max_items=5))  # deterministic
    assert len(text.splitlines()) == 1 + 1 + 5
    assert all(len(line) < MAX_CONDITION_CHARS + 120 for line in text.splitlines())
    assert len(linearize(plan, max_lines=10).splitlines()) == 11
    assert plan_hints(None) == [] and plan_hints({}) == [] and render_hints([]) == "" and linearize(None) == ""


def test_linearize_one_line_per_operator() -> None:
    plan = op("Nested Loop", 150, scan("users", 50, alias="u"),
              scan("events", 3, removed=7, loops=50, alias="e", fields={
                  "Node Type": "Index Scan", "Index Name": "events_user_id_idx", "Index Cond": "(user_id = u.id)"}))
    lines = linearize(plan).splitlines()
    assert len(lines) == len(list(walk(plan)))
    assert lines[0].startswith("Nested Loop rows=150 est=150")
    assert lines[2] == ("  Index Scan using events_user_id_idx on events e [index cond: (user_id = u.id)] "
                        "rows=150 est=150 loops=50 removed=350 cost=1")


# --- divergence: definitions ------------------------------------------------------------------


def _variants() -> list[dict[str, Any]]:
    seq = {"Node Type": "Seq Scan", "Relation Name": "orders", "Filter": "(user_id = 42)"}
    index = {"Node Type": "Index Scan", "Relation Name": "orders", "Index Name": "orders_user_id_idx",
             "Index Cond": "(user_id = 42)"}
    users = {"Node Type": "Seq Scan", "Relation Name": "users"}

    def hash_join(outer: dict[str, Any], inner: dict[str, Any], cond: str = "(o.user_id = u.id)",
                  join_type: str = "Inner") -> dict[str, Any]:
        return {"Node Type": "Hash Join", "Join Type": join_type, "Hash Cond": cond,
                "Plans": [outer, {"Node Type": "Hash", "Plans": [inner]}]}

    def aggregate(child: dict[str, Any], keys: list[str]) -> dict[str, Any]:
        return {"Node Type": "Aggregate", "Strategy": "Hashed", "Group Key": keys, "Plans": [child]}

    return [
        seq, index, users, {**seq, "Total Cost": 5.0, "Plan Rows": 3},
        hash_join(seq, users), hash_join(users, seq), hash_join(index, users), hash_join(seq, users, "(o.id = u.id)"),
        hash_join(seq, users, join_type="Semi"), aggregate(hash_join(seq, users), ["u.id"]),
        aggregate(hash_join(seq, users), ["u.id", "u.email"]), {"Node Type": "Gather", "Plans": [seq]},
    ]


def test_divergence_agrees_with_signature() -> None:
    variants = _variants()
    for a, b in itertools.product(variants + [None], repeat=2):
        d = divergence(a, b)
        assert d.changed == (signature(a) != signature(b))
        assert 0.0 <= d.score <= 1.0
        assert (d.score > 0) == d.changed and bool(d.differences) == d.changed
        assert abs(d.score - divergence(b, a).score) < 1e-9


def test_divergence_names_what_changed() -> None:
    v = _variants()
    seq, index, hash_join, swapped, with_index, other_keys, semi, agg1, agg2, gather = (
        v[0], v[1], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11])
    to_index = "Seq Scan on orders -> Index Scan using orders_user_id_idx on orders"
    assert divergence(seq, index).differences[0] == to_index
    assert to_index in divergence(hash_join, with_index).differences
    assert divergence(hash_join, swapped).differences[0] == "join order changed: orders, users -> users, orders"
    assert divergence(hash_join, other_keys).differences == [
        "join keys differ at Hash Join: (o.user_id = u.id) -> (o.id = u.id)"]
    assert divergence(hash_join, semi).differences == ["Hash Join -> Hash Semi Join"]
    assert divergence(agg1, agg2).differences == ["aggregation keys differ at HashAggregate: u.id -> u.id, u.email"]
    assert divergence(gather, seq).differences == ["removed Gather"]
    assert divergence(seq, agg1).differences == [
        "relations scanned differ: orders -> orders, users", "added HashAggregate", "added Hash Join",
        "added Hash (and 1 operator below)"]
    assert divergence(v[3], seq) == divergence(seq, seq)


def test_divergence_reports_moved_subtrees_and_caps_the_list() -> None:
    a = {"Node Type": "Append", "Plans": [{"Node Type": "Seq Scan", "Relation Name": f"t{i}"} for i in range(30)]}
    b = {"Node Type": "Append", "Plans": [{"Node Type": "Index Scan", "Relation Name": f"t{i}", "Index Name": f"i{i}"}
                                          for i in range(30)]}
    d = divergence(a, b)
    assert len(d.differences) == MAX_DIFFERENCES + 1 and d.differences[-1] == "... and 18 more differences"
    sort = {"Node Type": "Sort", "Sort Key": ["x"], "Plans": [{"Node Type": "Seq Scan", "Relation Name": "x"}]}
    limit = {"Node Type": "Limit", "Plans": [{"Node Type": "Seq Scan", "Relation Name": "y"}]}
    moved = divergence({"Node Type": "Append", "Plans": [sort, limit]}, {"Node Type": "Append", "Plans": [limit, sort]})
    assert moved.differences[0] == "join order changed: x, y -> y, x"
    assert [line for line in moved.differences if line.startswith("moved")] in (
        ["moved Sort (and 1 operator below)"], ["moved Limit (and 1 operator below)"])


# --- against the demo database ----------------------------------------------------------------


@pytest.fixture(scope="module")
def conn(demo_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(demo_dsn, autocommit=True) as connection:
        connection.execute("SET statement_timeout = '120s'")
        yield connection


def explain(conn: psycopg.Connection[Any], sql: str, analyze: bool = False) -> dict[str, Any]:
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    row = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def table_sizes(conn: psycopg.Connection[Any]) -> dict[str, float]:
    rows = conn.execute("SELECT relname, reltuples FROM pg_class WHERE relname IN "
                        "('users', 'products', 'orders', 'events')").fetchall()
    return {name: float(count) for name, count in rows}


SELECTIVE = "SELECT id FROM orders WHERE status = 'refunded' AND coupon_code = 'SAVE20'"


def test_selective_filter_is_a_reducer_on_orders(conn: psycopg.Connection[Any]) -> None:
    expected = conn.execute(f"SELECT count(*) FROM ({SELECTIVE}) AS q").fetchone()
    assert expected is not None
    hints = plan_hints(explain(conn, SELECTIVE, analyze=True))
    top = hints[0]
    assert top.category == "Filter" and top.target == "orders" and top.actual
    assert top.change.startswith("reduce by 99.")
    # Per-loop averages are rounded; a parallel scan runs in up to three processes.
    assert abs(top.rows_out - expected[0]) <= 3 and abs(top.rows_in - 500_000) <= 3
    estimated = plan_hints(explain(conn, SELECTIVE), table_rows=table_sizes(conn))[0]
    assert estimated.target == "orders" and estimated.change.startswith("reduce by 99.") and not estimated.actual


def test_many_to_many_join_is_an_expander(conn: psycopg.Connection[Any]) -> None:
    expected = conn.execute("SELECT sum(n * n) FROM (SELECT count(*) AS n FROM products GROUP BY category) AS c"
                            ).fetchone()
    assert expected is not None
    sql = "SELECT p.id, q.id FROM products AS p JOIN products AS q ON q.category = p.category"
    for analyze in (True, False):
        join, = [h for h in plan_hints(explain(conn, sql, analyze)) if h.category == "Join"]
        assert join.change.startswith("expand by") and join.reduction < 0
        assert join.rows_in == 2000
        if analyze:
            assert join.rows_out == expected[0]


def test_index_nested_loop_with_filter(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SET enable_hashjoin = off")
    conn.execute("SET enable_mergejoin = off")
    try:
        plan = explain(conn, "SELECT u.id, e.id FROM users AS u JOIN events AS e ON e.user_id = u.id "
                             "WHERE u.id < 50 AND e.event_type = 'purchase'", analyze=True)
    finally:
        conn.execute("RESET enable_hashjoin")
        conn.execute("RESET enable_mergejoin")
    hints = plan_hints(plan)
    loop, = by_category(hints, "Nested Loop")
    assert loop.loops == 49 and loop.target == "u ⋈ e" and "(user_id = u.id)" in loop.condition
    probe, = by_category(hints, "Join with Filter")
    assert probe.target == "events e" and probe.loops == 49 and probe.change.startswith("reduce by")
    assert "filter: (event_type = 'purchase'::text)" in probe.condition


def test_pass_through_operators_are_pruned_in_a_real_plan(conn: psycopg.Connection[Any]) -> None:
    sql = QUERIES[2].read_text()  # SELECT DISTINCT u.* over users JOIN events
    for analyze in (False, True):
        plan = explain(conn, sql, analyze)
        hints = plan_hints(plan, table_rows=None if analyze else table_sizes(conn))
        assert hints and all(h.change != "pass-through" for h in hints)
        assert not any(h.target.startswith("users") for h in hints)  # a cheap full scan changes nothing
        assert not {h.operator for h in hints} & {"Gather", "Hash", "Sort"}
        events, = [h for h in hints if h.target == "events e"]
        assert events.category == "Filter" and events.change.startswith("reduce by")
        assert render_hints(hints).startswith("Cardinality flow")


def test_correlated_subplans_are_hinted_with_their_scope(conn: psycopg.Connection[Any]) -> None:
    hints = plan_hints(explain(conn, QUERIES[1].read_text()))  # five correlated aggregates per user
    aggregates = by_category(hints, "Aggregation")
    assert sum(h.count for h in aggregates) == 5
    assert all(scope.startswith("SubPlan") for h in aggregates for scope in h.scopes)
    assert all(h.loops > 1000 for h in aggregates)  # run once per active user


@pytest.mark.parametrize("path", QUERIES, ids=lambda p: p.stem)
def test_demo_queries_render_bounded_deterministic_text(conn: psycopg.Connection[Any], path: Path) -> None:
    plan = explain(conn, path.read_text())
    hints = plan_hints(plan, max_items=8, table_rows=table_sizes(conn))
    assert 0 < len(hints) <= 8 and all(h.category in CATEGORIES for h in hints)
    text = render_hints(hints)
    assert text == render_hints(plan_hints(explain(conn, path.read_text()), max_items=8,
                                           table_rows=table_sizes(conn)))
    assert len(text) <= 8 * 400 and len(text.splitlines()) <= 1 + 2 * 8
    lines = linearize(plan, max_lines=20).splitlines()
    assert len(lines) <= 21 and lines[0] == linearize(plan).splitlines()[0]
    assert all(len(line) <= 400 for line in lines)


def test_divergence_of_real_plans(conn: psycopg.Connection[Any]) -> None:
    probe = "SELECT * FROM orders WHERE user_id = 42"
    indexed = explain(conn, probe)
    assert divergence(indexed, explain(conn, "SELECT *\n  FROM orders\n WHERE user_id = 42")).changed is False
    conn.execute("SET enable_indexscan = off")
    conn.execute("SET enable_bitmapscan = off")
    conn.execute("SET max_parallel_workers_per_gather = 0")  # one plan shape on every machine
    try:
        scanned = explain(conn, probe)
    finally:
        conn.execute("RESET enable_indexscan")
        conn.execute("RESET enable_bitmapscan")
        conn.execute("RESET max_parallel_workers_per_gather")
    d = divergence(scanned, indexed)
    assert d.changed and d.score > 0.5
    assert any(line.startswith("Seq Scan on orders ->") for line in d.differences), d.differences
    distinct = QUERIES[2].read_text()
    exists = ("SELECT u.* FROM users AS u WHERE EXISTS "
              "(SELECT 1 FROM events AS e WHERE e.user_id = u.id AND e.event_type IN ('view', 'click'))")
    d = divergence(explain(conn, distinct), explain(conn, exists))
    assert d.changed and 0 < d.score <= 1 and d.differences
    plans = [explain(conn, q.read_text()) for q in QUERIES] + [scanned, indexed]
    for a, b in itertools.product(plans, repeat=2):
        assert divergence(a, b).changed == (signature(a) != signature(b))
