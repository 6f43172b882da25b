"""Equivalence beyond today's data: run both queries on perturbed instances and report the first
counterexample, shrunk to the fewest rows that still tell the two apart.

The instances (`instances.py`) are private temporary copies of the tables either query reads; the
queries are pointed at them by rewriting their table references (`relations.redirect`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast

from sidecar.verify import equivalence, relations, tablefacts
from sidecar.verify.instances import (
    Boundary,
    Focus,
    Instance,
    InstanceBuilder,
    InstanceConfig,
    Link,
    jsonable,
)
from sidecar.verify.session import (
    DatabaseUnavailable,
    PermissionRefused,
    ReadOnlySession,
    Run,
    Scratch,
    SessionError,
)


@dataclass(frozen=True)
class DifferentialReport:
    """What the perturbed instances showed."""

    tried: list[dict[str, Any]] = field(default_factory=list)
    """One entry per instance: name, description, rows per table, result rows."""
    counterexample: dict[str, Any] | None = None
    skipped: str = ""
    """Why no instance was tried (a view in the query, no TEMP privilege…)."""
    elapsed_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instances": self.tried, "elapsed_ms": round(self.elapsed_ms, 1)}
        if self.skipped:
            out["skipped"] = self.skipped
        if self.counterexample is not None:
            out["counterexample_instance"] = self.counterexample["instance"]
        return out


def check(session: ReadOnlySession, original_stmt: ast.Node, candidate_stmt: ast.Node, order: equivalence.OrderSpec,
          config: InstanceConfig = InstanceConfig(), shrink_probes: int = 60) -> DifferentialReport:
    """Compare the original and the candidate on perturbed instances; never raises for a bad candidate."""
    start = time.perf_counter()
    q, r = relations.relations(original_stmt), relations.relations(candidate_stmt)
    names = list(dict.fromkeys(q.tables + r.tables))
    if not names:
        return DifferentialReport(skipped="the queries read no tables")
    if relations.parameter_numbers(original_stmt) or relations.parameter_numbers(candidate_stmt):
        return DifferentialReport(skipped="parameterized queries are compared on perturbed instances "
                                          "only with parameter values")
    with session.transaction() as cur:
        oids = tablefacts.resolve(cur, names)
        missing = [".".join(filter(None, n)) for n, oid in oids.items() if oid is None]
        if missing:
            return DifferentialReport(skipped=f"cannot resolve {', '.join(missing)}")
        facts = {oid: tablefacts.load(cur, oid) for oid in dict.fromkeys(o for o in oids.values() if o)}
    other = [t.label for t in facts.values() if not t.copyable]
    if other:
        return DifferentialReport(skipped=f"{', '.join(other)} is not a table (a view or foreign table); "
                                          "its contents cannot be perturbed consistently")
    tables = list(facts.values())
    links, boundaries = _links_and_boundaries([q, r], oids, tables)
    focus = [Focus(oid, alias, predicate) for rel in (q, r) for alias, predicate in rel.filters
             if (oid := oids.get(rel.aliases.get(alias, (None, "")))) is not None]
    focus.extend(_loose_focus([q, r], tables))

    def target(name: relations.TableName) -> relations.TableName | None:
        oid = oids.get(name)
        return ("pg_temp", InstanceBuilder.instance_table(facts[oid])) if oid else None

    queries = (relations.redirect(original_stmt, target), relations.redirect(candidate_stmt, target))
    try:
        with session.scratch() as scratch:
            builder = InstanceBuilder(scratch, tables, links, boundaries, config, focus)
            builder.create()
            builder.sample()
            report = _try_instances(scratch, builder, queries, order, config, shrink_probes)
    except PermissionRefused as exc:
        return DifferentialReport(skipped=f"no perturbed instances: {exc}")
    except DatabaseUnavailable:
        raise
    except SessionError as exc:
        return DifferentialReport(skipped=f"no perturbed instances: {exc}")
    except psycopg.Error as exc:
        # e.g. a temporary copy the server refuses; the live-data verdict stands, and says so.
        return DifferentialReport(skipped=f"no perturbed instances: {exc.diag.message_primary or exc}")
    return DifferentialReport(report.tried, report.counterexample, report.skipped,
                              (time.perf_counter() - start) * 1000.0)


MIN_INFORMATIVE = 2
"""Non-empty instances a verdict on instances alone needs (one agreeing instance is too thin)."""


def informative(report: DifferentialReport) -> int:
    """Instances where both agreed and the original's result had a non-NULL value in some row."""
    return sum(1 for t in report.tried if t.get("verdict") == "agree" and t.get("informative"))


def check_informative(session: ReadOnlySession, original_stmt: ast.Node, candidate_stmt: ast.Node,
                      order: equivalence.OrderSpec, config: InstanceConfig = InstanceConfig()) -> DifferentialReport:
    """`check`, sampling deeper once (more rows, partners of partners) when fewer than two instances
    gave the original a non-empty result: for verdicts that rest on the instances alone."""
    report = check(session, original_stmt, candidate_stmt, order, config)
    if report.counterexample is not None or report.skipped or informative(report) >= MIN_INFORMATIVE:
        return report
    deeper = dataclasses.replace(config, sample_rows=min(10_000, 4 * config.sample_rows),
                                 partner_rounds=config.partner_rounds + 2)
    second = check(session, original_stmt, candidate_stmt, order, deeper)
    return dataclasses.replace(second, tried=report.tried + second.tried,
                               elapsed_ms=report.elapsed_ms + second.elapsed_ms)


def _try_instances(scratch: Scratch, builder: InstanceBuilder, queries: tuple[str, str],
                   order: equivalence.OrderSpec, config: InstanceConfig, shrink_probes: int) -> DifferentialReport:
    tried: list[dict[str, Any]] = []
    for instance in builder.instances():
        a, b = (scratch.run(q, config.query_timeout_ms) for q in queries)
        entry: dict[str, Any] = {"name": instance.name, "rows": builder.row_counts()}
        verdict = _differ(a, b, order)
        entry["result_rows"] = a.row_count
        entry["informative"] = bool(a.row_count) and (a.rows is None or any(v is not None for row in a.rows
                                                                             for v in row))
        entry["verdict"] = verdict or "agree"
        tried.append(entry)
        if not verdict or verdict == "inconclusive":
            continue
        probes = _shrink(scratch, builder, queries, order, config, shrink_probes)
        a, b = (scratch.run(q, config.query_timeout_ms) for q in queries)
        return DifferentialReport(tried, _counterexample(instance, builder, a, b, order, probes))
    return DifferentialReport(tried)


def _differ(a: Run, b: Run, order: equivalence.OrderSpec) -> str:
    """'' when the two agree; 'inconclusive' when neither result is usable; else why they differ."""
    failed_a = a.error is not None or a.timed_out
    failed_b = b.error is not None or b.timed_out
    if failed_a and failed_b:
        return "inconclusive"
    if a.timed_out or b.timed_out:
        return "inconclusive"
    if failed_a != failed_b:
        bad = a if failed_a else b
        who = "the original" if failed_a else "the candidate"
        assert bad.error is not None
        return f"{who} fails where the other does not: {bad.error.message}"
    if a.too_many_rows or b.too_many_rows:
        return "inconclusive"
    comparison = equivalence.compare_digests(a.result, b.result, order)
    if not comparison.verifiable:
        return "inconclusive"  # e.g. a LIMIT reached with ties the ORDER BY leaves open
    return "" if comparison.equal else comparison.reason


def _shrink(scratch: Scratch, builder: InstanceBuilder, queries: tuple[str, str],
            order: equivalence.OrderSpec, config: InstanceConfig, budget: int) -> int:
    """Delete rows while the queries still disagree (delta debugging, by halves); returns probes used."""
    used = 0

    class _Agrees(Exception):
        pass

    for table in builder.tables:
        ids = builder.row_ids(table)
        chunk = max(1, len(ids) // 2)
        while ids and used < budget:
            i = 0
            while i < len(ids) and used < budget:
                part = ids[i:i + chunk]
                used += 1
                try:
                    with scratch.savepoint():
                        builder.delete_rows(table, part)
                        a, b = (scratch.run(q, config.query_timeout_ms) for q in queries)
                        verdict = _differ(a, b, order)
                        if not verdict or verdict == "inconclusive":
                            raise _Agrees
                    ids = builder.row_ids(table)
                except _Agrees:
                    i += chunk
            if chunk == 1:
                break
            chunk = max(1, chunk // 2)
    return used


def _counterexample(instance: Instance, builder: InstanceBuilder, a: Run, b: Run,
                    order: equivalence.OrderSpec, probes: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "instance": instance.name,
        "description": instance.description,
        "difference": _differ(a, b, order),
        "shrink_probes": probes,
        "tables": builder.contents(),
    }
    for key, run in (("original_result", a), ("candidate_result", b)):
        if run.error is not None:
            out[key] = {"error": run.error.message, "sqlstate": run.error.sqlstate}
        else:
            rows = run.rows or []
            out[key] = {"row_count": run.row_count, "rows": [[jsonable(v) for v in row] for row in rows[:20]]}
    if a.rows is not None and b.rows is not None:
        out["examples"] = equivalence.compare_results(a.rows, b.rows, order).examples
    return out


def _loose_focus(found: list[relations.QueryRelations], tables: list[tablefacts.TableFacts]) -> list[Focus]:
    """Focus for conditions on unqualified columns: each goes to the one table that has all its columns."""
    grouped: dict[int, list[str]] = {}
    for rel in found:
        for columns, predicate in rel.loose_filters:
            owners = {t.oid for c in columns for t in tables if t.column(c) is not None}
            if len(owners) == 1 and all(any(t.column(c) is not None for t in tables) for c in columns):
                preds = grouped.setdefault(owners.pop(), [])
                if predicate not in preds:
                    preds.append(predicate)
    return [Focus(oid, "laser_focus", " AND ".join(preds)) for oid, preds in grouped.items()]


def _links_and_boundaries(found: list[relations.QueryRelations],
                          oids: dict[relations.TableName, int | None],
                          tables: list[tablefacts.TableFacts]) -> tuple[list[Link], list[Boundary]]:
    links: list[Link] = []
    boundaries: list[Boundary] = []
    for rel in found:
        aliases = {alias: oids.get(name) for alias, name in rel.aliases.items()}
        for left, right in rel.links:
            a, b = tablefacts.locate(left, aliases, tables), tablefacts.locate(right, aliases, tables)
            if a and b and a[0] != b[0]:
                link = Link(a[0], a[1], b[0], b[1])
                if link not in links:
                    links.append(link)
        for comparison in rel.comparisons:
            where = tablefacts.locate(comparison.column, aliases, tables)
            if where and comparison.parameter is None:
                bound = Boundary(where[0], where[1], comparison.value)
                if bound not in boundaries:
                    boundaries.append(bound)
    return links, boundaries
