"""The verifier's runner: the checks in order, cheap before expensive, ending in a typed Outcome."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast import ast

from sidecar.verify import differential, equivalence, parameters, plans, relations, textdiff, timing
from sidecar.verify.guard import GuardError, guard
from sidecar.verify.instances import InstanceConfig
from sidecar.verify.parameters import Chosen
from sidecar.verify.outcome import Outcome, OutcomeStatus
from sidecar.verify.session import PermissionRefused, ReadOnlySession, Run


@dataclass(frozen=True)
class VerifierConfig:
    """How hard the verifier looks."""

    statement_timeout_ms: int = 30_000
    """Cap on every execution of either query."""
    timed_runs: int = 3
    """Timed runs per query after the warm-up, interleaved Q, R, Q, R, …"""
    dead_zone: float = 0.10
    """Speedups within 1 ± dead_zone are "no change" (SPA δ)."""
    min_edit_distance: float = 0.01
    """Below this normalized Levenshtein distance a rewrite is trivial (SPA)."""
    candidate_timeout_factor: float = 4.0
    """A candidate's timed runs are cut off at this multiple of the original's warm-up time."""
    perturbed_instances: bool = True
    """Also compare on perturbed copies of the referenced tables (NULLs, duplicates, empty tables…)."""
    instances: InstanceConfig = field(default_factory=InstanceConfig)
    """Size and number of the perturbed instances."""
    beyond_cap: bool = True
    """When the original does not finish within the cap, judge equivalence on the sampled and
    perturbed instances alone (QUITE rechecks "on a smaller scale") and speed as a lower bound,
    cap / T(R); the evidence says so. Off: such originals are "unverifiable"."""

    def __post_init__(self) -> None:
        if self.statement_timeout_ms <= 0:
            raise ValueError("statement_timeout_ms must be positive")
        if not 1 <= self.timed_runs <= 50:
            raise ValueError("timed_runs must be between 1 and 50")
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError("dead_zone must be in [0, 1)")
        if self.candidate_timeout_factor < 1.0:
            raise ValueError("candidate_timeout_factor must be at least 1")


class OriginalError(Exception):
    """The original query itself does not run; `sqlstate` says why."""

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True)
class OriginalProfile:
    """What the verifier learned about the original once, reused for every candidate."""

    sql: str
    """The text that runs: the original with any `$n` bound to `parameters`."""
    statement: ast.SelectStmt
    plan: dict[str, Any] | None
    warmup: Run
    text: str = ""
    """The original as given (with its `$n` placeholders, if any)."""
    parameters: dict[int, Chosen] = field(default_factory=dict)
    generic_plan: dict[str, Any] | None = None
    """For a parameterized original: the generic plan, valid for every value."""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.warmup.columns]


class Verifier:
    """Verifies candidates against one original, over one read-only session."""

    def __init__(self, session: ReadOnlySession, config: VerifierConfig = VerifierConfig()) -> None:
        self.session = session
        self.config = config

    def prepare(self, original: str,
                values: Mapping[int, str | None] | parameters.ParameterSet | None = None) -> OriginalProfile:
        """Guard, EXPLAIN and run the original once (its warm-up).

        An original with `$n` parameters must have a generic plan (that is its executability
        check); it then runs with `values` (plain values: source "given"; a ParameterSet keeps each
        value's source), or with typical values taken from the columns the parameters are
        compared with. Candidates are bound to the same values.

        Raises GuardError (refused), PermissionRefused (caller may not read it) or
        OriginalError (it does not run).
        """
        raw = guard(original)
        if not relations.parameter_numbers(raw.stmt):
            return self._run_original(original, raw.stmt, original, {}, None)
        generic_plan = self._generic_plan(original)
        if values is None:
            try:
                chosen = parameters.choose(self.session, raw.stmt)
            except parameters.ParameterError as exc:
                raise OriginalError(str(exc)) from None
        elif isinstance(values, parameters.ParameterSet):
            chosen = dict(values.values)
        else:
            chosen = {n: Chosen(v, "given") for n, v in values.items()}
        return self._bind_original(original, raw.stmt, chosen, generic_plan)

    def prepare_sets(self, original: str, given: Sequence[Mapping[int, str | None]] = (),
                     minimum: int = 3, maximum: int = 5) -> list[OriginalProfile]:
        """One profile per parameter set, for `verify_sets`.

        An original without `$n` has one profile (parameter sets do not apply). With `$n`, the
        sets come from `parameters.choose_sets` (the `given` samples of real executions first, then
        the planner's statistics), each value keeping its source; fewer than `minimum` distinct
        sets is an OriginalError. Raises as `prepare` does.
        """
        raw = guard(original)
        if not relations.parameter_numbers(raw.stmt):
            return [self.prepare(original)]
        generic_plan = self._generic_plan(original)
        try:
            sets = parameters.choose_sets(self.session, raw.stmt, given, minimum=minimum, maximum=maximum)
        except parameters.ParameterError as exc:
            raise OriginalError(str(exc)) from None
        return [self._bind_original(original, raw.stmt, dict(s.values), generic_plan) for s in sets]

    def _generic_plan(self, original: str) -> dict[str, Any] | None:
        generic_plan, explained, _ = self.session.explain_generic(original)
        _raise_for_original(explained)
        return generic_plan

    def _bind_original(self, text: str, statement: Any, chosen: dict[int, Chosen],
                       generic_plan: dict[str, Any] | None) -> OriginalProfile:
        try:
            bound = relations.bind(statement, {n: c.value for n, c in chosen.items()})
        except KeyError as exc:
            raise OriginalError(str(exc.args[0])) from None
        return self._run_original(bound, guard(bound).stmt, text, chosen, generic_plan)

    def _run_original(self, original: str, statement: Any, text: str, chosen: dict[int, Chosen],
                      generic_plan: dict[str, Any] | None) -> OriginalProfile:
        plan, explained = self.session.explain(original)
        _raise_for_original(explained)
        warmup = self.session.run(original)
        _raise_for_original(warmup)
        return OriginalProfile(sql=original, statement=statement, plan=plan, warmup=warmup, text=text,
                               parameters=chosen, generic_plan=generic_plan)

    def verify_sets(self, originals: Sequence[OriginalProfile], candidate: str) -> Outcome:
        """Verify `candidate` on every parameter set of one original (profiles from `prepare_sets`).

        One profile: exactly `verify`. Several: `verify` on each, in order, stopping at the first
        set whose outcome is not FASTER; the candidate is FASTER only when it is on every set.

        * All FASTER: `speedup` is the geometric mean of the per-set speedups, `original_ms` and
          `candidate_ms` the arithmetic means of the per-set medians; `evidence` is the first set's
          (plans, equivalence, latencies…), `evidence["speedup_is_lower_bound"]` is true when it is
          on any set.
        * Otherwise: the failing set's status, detail prefixed "on parameter set k of n: ",
          speedup, times, evidence and counterexample; `evidence["failed_parameter_set"]` is k.

        Either way `evidence["parameter_sets"]` lists every set verified: {"set": k, "parameters":
        {"$1": {"value", "source"}}, "status", "detail", "speedup", "original_ms", "candidate_ms",
        "speedup_is_lower_bound"}, and `evidence["speedup_min"]` is the least of their speedups.
        """
        if not originals:
            raise ValueError("verify_sets needs at least one profile")
        if len(originals) == 1:
            return self.verify(originals[0], candidate)
        total = len(originals)
        entries: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        for k, profile in enumerate(originals, start=1):
            outcome = self.verify(profile, candidate)
            outcomes.append(outcome)
            entries.append({
                "set": k,
                "parameters": {f"${n}": {"value": c.value, "source": c.source}
                               for n, c in sorted(profile.parameters.items())},
                "status": outcome.status.value,
                "detail": outcome.detail,
                "speedup": round(outcome.speedup, 4),
                "original_ms": round(outcome.original_ms, 3),
                "candidate_ms": round(outcome.candidate_ms, 3),
                "speedup_is_lower_bound": bool(outcome.evidence.get("speedup_is_lower_bound", False)),
            })
            if outcome.status is not OutcomeStatus.FASTER:
                evidence = dict(outcome.evidence)
                evidence["parameter_sets"] = entries
                evidence["speedup_min"] = round(min(o.speedup for o in outcomes), 4)
                evidence["failed_parameter_set"] = k
                return Outcome(outcome.status, f"on parameter set {k} of {total}: {outcome.detail}",
                               speedup=outcome.speedup, original_ms=outcome.original_ms,
                               candidate_ms=outcome.candidate_ms, evidence=evidence,
                               counterexample=outcome.counterexample)
        speedups = [o.speedup for o in outcomes]
        mean = math.exp(sum(math.log(max(x, 1e-9)) for x in speedups) / total)
        lower_bound = any(e["speedup_is_lower_bound"] for e in entries)
        evidence = dict(outcomes[0].evidence)
        evidence["parameter_sets"] = entries
        evidence["speedup_min"] = round(min(speedups), 4)
        if lower_bound:
            evidence["speedup_is_lower_bound"] = True
        detail = (f"{'at least ' if lower_bound else ''}{mean:.2f}x, geometric mean over {total} parameter sets "
                  f"(least {min(speedups):.2f}x on set {speedups.index(min(speedups)) + 1})")
        return Outcome(OutcomeStatus.FASTER, detail, speedup=mean,
                       original_ms=sum(o.original_ms for o in outcomes) / total,
                       candidate_ms=sum(o.candidate_ms for o in outcomes) / total, evidence=evidence)

    def explain_error(self, original: OriginalProfile, candidate: str) -> str | None:
        """The executability check alone (for self-correction): None when the guard admits the
        candidate and PostgreSQL can plan it (its generic plan, if the original has `$n`), else why not.
        A planning timeout is not an error here; the full verification reports it."""
        try:
            candidate_stmt = guard(candidate).stmt
        except GuardError as exc:
            return str(exc)
        used = relations.parameter_numbers(candidate_stmt)
        unknown = sorted(set(used) - set(original.parameters))
        if unknown:
            return f"the query uses parameter ${unknown[0]}, which the original does not have"
        if used or original.parameters:
            _, explained, _ = self.session.explain_generic(candidate)
        else:
            _, explained = self.session.explain(candidate)
        return explained.error.message if explained.error is not None else None

    def plan_cost(self, original: OriginalProfile, candidate: str) -> float | None:
        """The planner's total cost estimate for a candidate (its generic plan when the original has
        `$n`); None when the guard refuses it or PostgreSQL cannot plan it. A hint for ranking
        candidates, never a verdict."""
        try:
            candidate_stmt = guard(candidate).stmt
        except GuardError:
            return None
        used = relations.parameter_numbers(candidate_stmt)
        if set(used) - set(original.parameters):
            return None
        if used or original.parameters:
            plan, explained, _ = self.session.explain_generic(candidate)
        else:
            plan, explained = self.session.explain(candidate)
        if explained.error is not None or plan is None:
            return None
        return plans.total_cost(plan)

    def verify(self, original: OriginalProfile, candidate: str) -> Outcome:
        """All checks for one candidate; never raises for a bad candidate."""
        evidence: dict[str, Any] = {}
        try:
            candidate_stmt = guard(candidate).stmt
        except GuardError as exc:
            return Outcome(OutcomeStatus.GUARD_REFUSED, str(exc))
        used = relations.parameter_numbers(candidate_stmt)
        if used or original.parameters:
            unknown = sorted(set(used) - set(original.parameters))
            if unknown:
                return Outcome(OutcomeStatus.EXEC_ERROR,
                               f"the candidate uses parameter ${unknown[0]}, which the original does not have")
            _, explained, _ = self.session.explain_generic(candidate)
            if explained.error is not None:
                return Outcome(OutcomeStatus.EXEC_ERROR, explained.error.message,
                               evidence={"sqlstate": explained.error.sqlstate, "stage": "explain (generic plan)"})
            evidence["parameters"] = {f"${n}": {"value": c.value, "source": c.source}
                                      for n, c in sorted(original.parameters.items())}
            candidate = relations.bind(candidate_stmt, {n: c.value for n, c in original.parameters.items()})
            candidate_stmt = guard(candidate).stmt

        plan, explained = self.session.explain(candidate)
        if explained.error is not None:
            return Outcome(OutcomeStatus.EXEC_ERROR, explained.error.message,
                           evidence={"sqlstate": explained.error.sqlstate, "stage": "explain"})
        evidence["plan_after"] = plans.render(plan)
        evidence["plan_before"] = plans.render(original.plan)
        divergence = plans.divergence(original.plan, plan)
        evidence["plan_changed"] = divergence.changed
        evidence["plan_divergence"] = {"score": round(divergence.score, 4), "differences": divergence.differences}
        evidence["cost_before"] = plans.total_cost(original.plan)
        evidence["cost_after"] = plans.total_cost(plan)

        if original.warmup.timed_out:
            return self._beyond_cap(original, candidate, candidate_stmt, evidence)
        cap = self._candidate_cap(original)
        run = self.session.run(candidate, timeout_ms=max(cap, self.config.statement_timeout_ms // 2))
        if run.error is not None:
            evidence.update(sqlstate=run.error.sqlstate, stage="execute")
            return Outcome(OutcomeStatus.EXEC_ERROR, run.error.message, evidence=evidence)
        if run.timed_out:
            return Outcome(OutcomeStatus.UNVERIFIABLE, "the candidate timed out before its result "
                           "could be compared", evidence=evidence)
        if run.too_many_rows or original.warmup.too_many_rows:
            return Outcome(OutcomeStatus.UNVERIFIABLE, "the result is too large to compare",
                           evidence=evidence)

        shape = _shape_difference(original.warmup, run)
        if shape:
            return Outcome(OutcomeStatus.SHAPE_MISMATCH, shape, evidence=evidence)

        assert original.warmup.rows is not None and run.rows is not None
        order = equivalence.order_spec(original.statement, original.column_names)
        comparison = equivalence.compare_results(original.warmup.rows, run.rows, order)
        evidence["equivalence"] = {
            "method": "result multiset on live data" + (", order-aware" if order.ordered else ""),
            "rows": len(original.warmup.rows),
            "original_hash": equivalence.result_hash(original.warmup.rows),
            "candidate_hash": equivalence.result_hash(run.rows),
            "note": comparison.reason,
        }
        if not comparison.verifiable:
            return Outcome(OutcomeStatus.UNVERIFIABLE, comparison.reason, evidence=evidence)
        if not comparison.equal:
            evidence["equivalence"]["examples"] = comparison.examples
            counterexample = {"instance": "live data", "difference": comparison.reason,
                              "examples": comparison.examples}
            return Outcome(OutcomeStatus.NOT_EQUIVALENT, comparison.reason, evidence=evidence,
                           counterexample=counterexample)

        if self.config.perturbed_instances:
            report = differential.check(self.session, original.statement, candidate_stmt, order,
                                        self.config.instances)
            evidence["perturbed_instances"] = report.to_json()
            if report.counterexample is not None:
                cx = report.counterexample
                return Outcome(OutcomeStatus.NOT_EQUIVALENT,
                               f"differs on a perturbed instance ({cx['instance']}): {cx['difference']}",
                               evidence=evidence, counterexample=cx)

        distance = textdiff.normalized_edit_distance(original.sql, candidate, self.config.min_edit_distance)
        evidence["edit_distance"] = round(distance, 4)
        if distance < self.config.min_edit_distance:
            return Outcome(OutcomeStatus.TRIVIAL, "near-identical text", evidence=evidence)
        if not evidence["plan_changed"]:
            return Outcome(OutcomeStatus.TRIVIAL, "the plan is unchanged", evidence=evidence)

        return self._measure(original, candidate, cap, evidence)

    def _beyond_cap(self, original: OriginalProfile, candidate: str, candidate_stmt: Any,
                    evidence: dict[str, Any]) -> Outcome:
        """The original does not finish within the cap: instances for equivalence, a lower bound for speed."""
        cap = self.config.statement_timeout_ms
        evidence["original_timed_out_ms"] = cap
        if not (self.config.beyond_cap and self.config.perturbed_instances):
            return Outcome(OutcomeStatus.UNVERIFIABLE, "the original timed out", evidence=evidence)
        # Only a candidate beyond the dead zone even against the cap is worth the instances.
        candidate_cap = max(1, int(cap / (1.0 + self.config.dead_zone)))
        run = self.session.run(candidate, timeout_ms=candidate_cap)
        if run.error is not None:
            evidence.update(sqlstate=run.error.sqlstate, stage="execute")
            return Outcome(OutcomeStatus.EXEC_ERROR, run.error.message, evidence=evidence)
        if run.timed_out:
            return Outcome(OutcomeStatus.UNVERIFIABLE, f"the original does not finish within {cap} ms "
                           f"and the candidate not within {candidate_cap} ms", evidence=evidence)
        shape = _shape_difference(self.session.run(f"SELECT * FROM ({original.sql}) AS laser_shape LIMIT 0"), run)
        if shape:
            return Outcome(OutcomeStatus.SHAPE_MISMATCH, shape, evidence=evidence)
        order = equivalence.order_spec(original.statement, [c.name for c in run.columns])
        report = differential.check_informative(self.session, original.statement, candidate_stmt, order,
                                                self.config.instances)
        evidence["perturbed_instances"] = report.to_json()
        informative = differential.informative(report)
        evidence["equivalence"] = {
            "method": f"sampled and perturbed instances only: the original does not finish on the live data "
                      f"within {cap} ms",
            "instances": len(report.tried), "informative_instances": informative,
        }
        if report.counterexample is not None:
            cx = report.counterexample
            return Outcome(OutcomeStatus.NOT_EQUIVALENT, f"differs on an instance ({cx['instance']}): "
                           f"{cx['difference']}", evidence=evidence, counterexample=cx)
        if report.skipped or informative < differential.MIN_INFORMATIVE:
            why = report.skipped or (f"only {informative} instance(s) gave the original a non-empty, non-NULL "
                                     f"result to compare (at least {differential.MIN_INFORMATIVE} are needed)")
            return Outcome(OutcomeStatus.UNVERIFIABLE, f"the original timed out, and {why}", evidence=evidence)
        distance = textdiff.normalized_edit_distance(original.sql, candidate, self.config.min_edit_distance)
        evidence["edit_distance"] = round(distance, 4)
        if distance < self.config.min_edit_distance or not evidence["plan_changed"]:
            return Outcome(OutcomeStatus.TRIVIAL, "near-identical text or unchanged plan", evidence=evidence)
        samples: list[float] = []
        for _ in range(self.config.timed_runs):
            timed = self.session.run(candidate, timeout_ms=candidate_cap, fetch=True)
            if timed.error is not None or timed.timed_out:
                return Outcome(OutcomeStatus.UNVERIFIABLE, "a timed run of the candidate failed or reached "
                               f"{candidate_cap} ms", evidence=evidence)
            samples.append(timed.elapsed_ms)
        t_r = timing.median_ms(samples)
        ratio = timing.speedup(float(cap), t_r)
        evidence["latencies_ms"] = {"original": [], "candidate": [round(x, 3) for x in samples],
                                    "original_at_least": cap, "candidate_spread": round(timing.spread_ms(samples), 3)}
        evidence["speedup_is_lower_bound"] = True
        detail = (f"at least {ratio:.1f}x: the original does not finish within {cap} ms, the candidate takes "
                  f"{t_r:.1f} ms (median of {len(samples)}); results agree on {informative} non-empty "
                  f"instance(s) of {len(report.tried)}, not compared on the live data")
        return Outcome(OutcomeStatus.FASTER, detail, speedup=ratio, original_ms=float(cap), candidate_ms=t_r,
                       evidence=evidence)

    def _candidate_cap(self, original: OriginalProfile) -> int:
        cap = original.warmup.elapsed_ms * self.config.candidate_timeout_factor
        return int(min(self.config.statement_timeout_ms, max(1_000.0, cap)))

    def _measure(self, original: OriginalProfile, candidate: str, cap: int,
                 evidence: dict[str, Any]) -> Outcome:
        original_ms: list[float] = []
        candidate_ms: list[float] = []
        candidate_timeouts = original_timeouts = 0
        for _ in range(self.config.timed_runs):
            q = self.session.run(original.sql, fetch=True)
            r = self.session.run(candidate, timeout_ms=cap, fetch=True)
            if q.error is not None:
                return Outcome(OutcomeStatus.UNVERIFIABLE, "the original failed while timed", evidence=evidence)
            if r.error is not None:
                return Outcome(OutcomeStatus.EXEC_ERROR, r.error.message, evidence=evidence)
            # An original near the cap may finish its warm-up (results compared on the live data) and
            # then hit the cap while timed: that run counts at the cap, a lower bound on its time.
            original_timeouts += int(q.timed_out)
            original_ms.append(float(self.config.statement_timeout_ms) if q.timed_out else q.elapsed_ms)
            candidate_ms.append(float(cap) if r.timed_out else r.elapsed_ms)
            candidate_timeouts += int(r.timed_out)
        t_q, t_r = timing.median_ms(original_ms), timing.median_ms(candidate_ms)
        ratio = timing.speedup(t_q, t_r)
        evidence["latencies_ms"] = {
            "original": [round(x, 3) for x in original_ms],
            "candidate": [round(x, 3) for x in candidate_ms],
            "original_spread": round(timing.spread_ms(original_ms), 3),
            "candidate_spread": round(timing.spread_ms(candidate_ms), 3),
            "warmup_original": round(original.warmup.elapsed_ms, 3),
            "candidate_timeouts": candidate_timeouts,
            "candidate_cap_ms": cap,
        }
        verdict = timing.classify(ratio, self.config.dead_zone)
        detail = f"{ratio:.2f}x ({t_q:.1f} ms -> {t_r:.1f} ms, median of {len(original_ms)})"
        if verdict == "faster" and not timing.separated(original_ms, candidate_ms):
            verdict = "no_change"  # the median says faster, single runs do not agree: noise, not a win
            detail += "; the timed runs overlap, so the difference is within the noise"
        status = {"faster": OutcomeStatus.FASTER, "slower": OutcomeStatus.SLOWER,
                  "no_change": OutcomeStatus.NO_CHANGE}[verdict]
        if candidate_timeouts:
            detail += f"; the candidate hit its {cap} ms cap {candidate_timeouts} time(s)"
        if original_timeouts:
            evidence["speedup_is_lower_bound"] = True
            evidence["original_timeouts_while_timed"] = original_timeouts
            detail = (f"at least {detail}; the original hit the {self.config.statement_timeout_ms} ms cap in "
                      f"{original_timeouts} of its timed runs (counted at the cap)")
        return Outcome(status, detail, speedup=ratio, original_ms=t_q, candidate_ms=t_r, evidence=evidence)


def _raise_for_original(run: Run) -> None:
    if run.error is None:
        return
    if run.error.kind == "InsufficientPrivilege":
        raise PermissionRefused(run.error.message)
    raise OriginalError(f"the query does not run: {run.error.message}", run.error.sqlstate)


def _shape_difference(original: Run, candidate: Run) -> str:
    a, b = original.columns, candidate.columns
    if len(a) != len(b):
        return f"the candidate returns {len(b)} columns; the original returns {len(a)}"
    for i, (x, y) in enumerate(zip(a, b, strict=True), start=1):
        if x.name != y.name:
            return f"column {i} is named {y.name!r}; the original names it {x.name!r}"
        if x.type_oid != y.type_oid:
            return f"column {i} ({x.name}) has type oid {y.type_oid}; the original has {x.type_oid}"
    return ""
