"""The verifier's runner: the checks in order, cheap before expensive, ending in a typed Outcome.

For an original Q (profiled once by :meth:`Verifier.prepare`) and a candidate R:

1. guard R (one read-only statement) and bind the original's parameter values;
2. EXPLAIN R (executability; the plans and their divergence go into the evidence);
3. the trivial-text filter (SPA's edit distance): a near-identical R is not executed;
4. equivalence: R's result against Q's on the live data, then on perturbed instances; for a Q that
   does not finish within the cap, on sampled and perturbed instances alone;
5. an unchanged plan means an unchanged speed: equivalent, not timed;
6. speed: interleaved timed runs, medians, the dead zone.

Every caller decides through these methods: the sidecar's pipeline (:meth:`verify_sets`), the
training rewards (an Outcome is all a reward needs) and the benchmark, which measures with its own
protocol and asks only for the equivalence verdict (:meth:`check_equivalence`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.verify import differential, equivalence, parameters, plans, relations, textdiff, timing
from sidecar.verify.evidence import (
    EquivalenceEvidence,
    Evidence,
    Latencies,
    ParameterSetResult,
    PlanDivergenceEvidence,
)
from sidecar.verify.guard import GuardError, Statement, guard
from sidecar.verify.instances import InstanceConfig
from sidecar.verify.outcome import Outcome, OutcomeStatus
from sidecar.verify.parameters import Chosen
from sidecar.verify.session import Column, PermissionRefused, ReadOnlySession, Run


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
    """Below this normalized Levenshtein distance a rewrite is trivial (SPA) and is not executed."""
    candidate_timeout_factor: float = 4.0
    """A candidate's timed runs are cut off at this multiple of the original's warm-up time."""
    perturbed_instances: bool = True
    """After the live data agrees, also compare on perturbed copies of the referenced tables
    (NULLs, duplicates, empty tables…). Off: the live data decides (the papers' definition)."""
    instances: InstanceConfig = field(default_factory=InstanceConfig)
    """Size and number of the perturbed instances."""
    beyond_cap: bool = True
    """When the original does not finish within the cap, judge equivalence on sampled and
    perturbed instances alone (QUITE rechecks "on a smaller scale") and speed as a lower bound,
    cap / T(R); the evidence says so. Off: such originals are "unverifiable"."""
    strict_shape: bool = True
    """The candidate must return the original's column names and types (what an application that
    reads the result by name needs). Off: the number of columns and the values decide, as the
    papers compare results (the benchmark's replayed rewrites may rename a column)."""

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

    statement: Statement
    """The statement that runs: the original with any `$n` bound to `parameters`."""
    plan: dict[str, Any] | None
    warmup: Run
    """Its first execution; without rows when it did not finish within the cap."""
    columns: tuple[Column, ...]
    """Its result columns (from the warm-up, or from a description when the warm-up timed out)."""
    text: str = ""
    """The original as given (with its `$n` placeholders, if any)."""
    parameters: dict[int, Chosen] = field(default_factory=dict)
    generic_plan: dict[str, Any] | None = None
    """For a parameterized original: the generic plan, valid for every value."""

    @property
    def sql(self) -> str:
        """The text that runs."""
        return self.statement.text

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def timed_out(self) -> bool:
        """It does not finish within the cap: its result on the live data is unknown."""
        return self.warmup.timed_out

    def parameters_json(self) -> dict[str, dict[str, str | None]]:
        return {f"${n}": {"value": c.value, "source": c.source} for n, c in sorted(self.parameters.items())}


@dataclass(frozen=True)
class Estimate:
    """The planner's estimate for a statement (a hint for ranking, never a verdict)."""

    cost: float
    rows: float


Checked = tuple[Statement, Evidence, dict[str, Any] | None]
"""A candidate that passed the guard and EXPLAIN: its (bound) statement, the evidence so far, its plan."""


class Verifier:
    """Verifies candidates against one original, over one read-only session."""

    def __init__(self, session: ReadOnlySession, config: VerifierConfig = VerifierConfig()) -> None:
        self.session = session
        self.config = config

    # -- the original ---------------------------------------------------------------------------

    def prepare(self, original: Statement | str,
                values: Mapping[int, str | None] | parameters.ParameterSet | None = None,
                warmup: Run | None = None) -> OriginalProfile:
        """Guard (unless already admitted), EXPLAIN and run the original once (its warm-up).

        An original with `$n` parameters must have a generic plan (that is its executability
        check); it then runs with `values` (plain values: source "given"; a ParameterSet keeps each
        value's source), or with typical values taken from the columns the parameters are
        compared with. Candidates are bound to the same values.

        `warmup`: an execution of the original the caller already made (e.g. the benchmark's first
        timed run), used instead of running it again.

        Raises GuardError (refused), PermissionRefused (caller may not read it) or
        OriginalError (it does not run).
        """
        statement = _admitted(original)
        numbers = relations.parameter_numbers(statement.tree)
        if not numbers:
            return self._run_original(statement, statement.text, {}, None, warmup)
        generic_plan = self._generic_plan(statement)
        if values is None:
            try:
                chosen = parameters.choose(self.session, statement.tree)
            except parameters.ParameterError as exc:
                raise OriginalError(str(exc)) from None
        elif isinstance(values, parameters.ParameterSet):
            chosen = dict(values.values)
        else:
            chosen = {n: Chosen(v, "given") for n, v in values.items()}
        return self._bind_original(statement, chosen, generic_plan)

    def prepare_sets(self, original: Statement | str, given: Sequence[Mapping[int, str | None]] = (),
                     minimum: int = 3, maximum: int = 5) -> list[OriginalProfile]:
        """One profile per parameter set, for `verify_sets`.

        An original without `$n` has one profile (parameter sets do not apply). With `$n`, the
        sets come from `parameters.choose_sets` (the `given` samples of real executions first, then
        the planner's statistics), each value keeping its source; fewer than `minimum` distinct
        sets is an OriginalError. Raises as `prepare` does.
        """
        statement = _admitted(original)
        if not relations.parameter_numbers(statement.tree):
            return [self.prepare(statement)]
        generic_plan = self._generic_plan(statement)
        try:
            sets = parameters.choose_sets(self.session, statement.tree, given, minimum=minimum, maximum=maximum)
        except parameters.ParameterError as exc:
            raise OriginalError(str(exc)) from None
        return [self._bind_original(statement, dict(s.values), generic_plan) for s in sets]

    def _generic_plan(self, statement: Statement) -> dict[str, Any] | None:
        generic_plan, explained, _ = self.session.explain_generic(statement.text)
        _raise_for_original(explained)
        return generic_plan

    def _bind_original(self, statement: Statement, chosen: dict[int, Chosen],
                       generic_plan: dict[str, Any] | None) -> OriginalProfile:
        try:
            bound = relations.bind(statement.tree, {n: c.value for n, c in chosen.items()})
        except KeyError as exc:
            raise OriginalError(str(exc.args[0])) from None
        return self._run_original(guard(bound), statement.text, chosen, generic_plan, None)

    def _run_original(self, statement: Statement, text: str, chosen: dict[int, Chosen],
                      generic_plan: dict[str, Any] | None, warmup: Run | None) -> OriginalProfile:
        plan, explained = self.session.explain(statement.text)
        _raise_for_original(explained)
        if warmup is None:
            warmup = self.session.run(statement.text)
        _raise_for_original(warmup)
        columns = warmup.columns
        if warmup.timed_out:  # no result to read the columns from: ask PostgreSQL for its description
            columns, described = self.session.describe(statement.text)
            _raise_for_original(described)
        return OriginalProfile(statement=statement, plan=plan, warmup=warmup, columns=columns, text=text,
                               parameters=chosen, generic_plan=generic_plan)

    # -- planner hints ------------------------------------------------------------------------------

    def explain_error(self, original: OriginalProfile, candidate: Statement | str) -> str | None:
        """The executability check alone (for self-correction): None when the guard admits the
        candidate and PostgreSQL can plan it (its generic plan, if the original has `$n`), else why not.
        A planning timeout is not an error here; the full verification reports it."""
        try:
            statement = _admitted(candidate)
        except GuardError as exc:
            return str(exc)
        unknown = _unknown_parameters(original, statement)
        if unknown:
            return f"the query uses parameter ${unknown[0]}, which the original does not have"
        _, explained = self._plan(original, statement)
        return explained.error.message if explained.error is not None else None

    def estimate(self, original: OriginalProfile, candidate: Statement | str) -> Estimate | None:
        """The planner's estimate for a statement (its generic plan when the original has `$n`);
        None when the guard refuses it or PostgreSQL cannot plan it. For ranking candidates and for
        rules that need row estimates, never a verdict."""
        try:
            statement = _admitted(candidate)
        except GuardError:
            return None
        if _unknown_parameters(original, statement):
            return None
        plan, explained = self._plan(original, statement)
        if explained.error is not None or plan is None:
            return None
        return Estimate(plans.total_cost(plan), float(plan.get("Plan Rows") or 0.0))

    def _plan(self, original: OriginalProfile, statement: Statement) -> tuple[dict[str, Any] | None, Run]:
        if original.parameters or relations.parameter_numbers(statement.tree):
            plan, explained, _ = self.session.explain_generic(statement.text)
            return plan, explained
        return self.session.explain(statement.text)

    # -- candidates ---------------------------------------------------------------------------------

    def verify_sets(self, originals: Sequence[OriginalProfile], candidate: Statement | str) -> Outcome:
        """Verify `candidate` on every parameter set of one original (profiles from `prepare_sets`).

        One profile: exactly `verify`. Several: `verify` on each, in order, stopping at the first
        set whose outcome is not FASTER; the candidate is FASTER only when it is on every set.

        * All FASTER: `speedup` is the geometric mean of the per-set speedups, `original_ms` and
          `candidate_ms` the arithmetic means of the per-set medians; the evidence is the first set's
          (plans, equivalence, latencies…), `speedup_is_lower_bound` when it is on any set.
        * Otherwise: the failing set's status, detail prefixed "on parameter set k of n: ",
          speedup, times, evidence and counterexample; `failed_parameter_set` is k.

        Either way the evidence's `parameter_sets` lists every set verified, and `speedup_min` is
        the least of their speedups.
        """
        if not originals:
            raise ValueError("verify_sets needs at least one profile")
        try:
            statement = _admitted(candidate)
        except GuardError as exc:
            return Outcome(OutcomeStatus.GUARD_REFUSED, str(exc))
        if len(originals) == 1:
            return self.verify(originals[0], statement)
        total = len(originals)
        entries: list[ParameterSetResult] = []
        outcomes: list[Outcome] = []
        for k, profile in enumerate(originals, start=1):
            outcome = self.verify(profile, statement)
            outcomes.append(outcome)
            entries.append(ParameterSetResult(
                set=k, parameters=profile.parameters_json(), status=outcome.status.value, detail=outcome.detail,
                speedup=outcome.speedup, original_ms=outcome.original_ms, candidate_ms=outcome.candidate_ms,
                speedup_is_lower_bound=outcome.evidence.speedup_is_lower_bound))
            if outcome.status is not OutcomeStatus.FASTER:
                evidence = outcome.evidence
                evidence.parameter_sets = tuple(entries)
                evidence.speedup_min = round(min(o.speedup for o in outcomes), 4)
                evidence.failed_parameter_set = k
                return Outcome(outcome.status, f"on parameter set {k} of {total}: {outcome.detail}",
                               speedup=outcome.speedup, original_ms=outcome.original_ms,
                               candidate_ms=outcome.candidate_ms, evidence=evidence,
                               counterexample=outcome.counterexample)
        speedups = [o.speedup for o in outcomes]
        mean = math.exp(sum(math.log(max(x, 1e-9)) for x in speedups) / total)
        lower_bound = any(e.speedup_is_lower_bound for e in entries)
        evidence = outcomes[0].evidence
        evidence.parameter_sets = tuple(entries)
        evidence.speedup_min = round(min(speedups), 4)
        evidence.speedup_is_lower_bound = lower_bound
        detail = (f"{'at least ' if lower_bound else ''}{mean:.2f}x, geometric mean over {total} parameter sets "
                  f"(least {min(speedups):.2f}x on set {speedups.index(min(speedups)) + 1})")
        return Outcome(OutcomeStatus.FASTER, detail, speedup=mean,
                       original_ms=sum(o.original_ms for o in outcomes) / total,
                       candidate_ms=sum(o.candidate_ms for o in outcomes) / total, evidence=evidence)

    def verify(self, original: OriginalProfile, candidate: Statement | str) -> Outcome:
        """All checks for one candidate, in order (see the module); never raises for a bad candidate."""
        checked = self._checked(original, candidate)
        if isinstance(checked, Outcome):
            return checked
        statement, evidence, _ = checked
        distance = textdiff.normalized_edit_distance(original.sql, statement.text, self.config.min_edit_distance)
        evidence.edit_distance = round(distance, 4)
        if distance < self.config.min_edit_distance:
            return Outcome(OutcomeStatus.TRIVIAL, "near-identical text: not executed", evidence=evidence)
        if original.timed_out:
            return self._beyond_cap(original, statement, evidence)
        cap = self._candidate_cap(original)
        timeout_ms = max(cap, self.config.statement_timeout_ms // 2)
        run = self.session.run(statement.text, timeout_ms=timeout_ms)
        if run.timed_out:
            evidence.candidate_timed_out_ms = timeout_ms
        failed = self._equivalence(original, statement, run, evidence)
        if failed is not None:
            return failed
        if not evidence.plan_changed:
            return _unchanged_plan(evidence)
        return self._measure(original, statement, cap, evidence)

    def check_equivalence(self, original: OriginalProfile, candidate: Statement | str,
                          run: Run | None = None) -> Outcome:
        """Steps 1, 2 and 4 alone: is the candidate equivalent? No triviality filter, no timing.

        `run`: an execution of the candidate the caller already made (with its rows), e.g. the
        benchmark's first run under its own protocol; without one the candidate runs once here.
        Returns EQUIVALENT when it is, else the failing check's outcome (exec_error,
        shape_mismatch, not_equivalent, unverifiable). Never raises for a bad candidate.
        """
        checked = self._checked(original, candidate)
        if isinstance(checked, Outcome):
            return checked
        statement, evidence, _ = checked
        if original.timed_out:
            evidence.original_timed_out_ms = self.config.statement_timeout_ms
            if not self.config.beyond_cap:
                return Outcome(OutcomeStatus.UNVERIFIABLE, "the original timed out", evidence=evidence)
        if run is None:
            run = self.session.run(statement.text)
        failed = self._equivalence(original, statement, run, evidence)
        if failed is not None:
            return failed
        assert evidence.equivalence is not None
        return Outcome(OutcomeStatus.EQUIVALENT, f"equivalent ({evidence.equivalence.method})", evidence=evidence)

    def _checked(self, original: OriginalProfile, candidate: Statement | str) -> Checked | Outcome:
        """Steps 1 and 2: guard, bind the original's parameter values, EXPLAIN."""
        try:
            statement = _admitted(candidate)
        except GuardError as exc:
            return Outcome(OutcomeStatus.GUARD_REFUSED, str(exc))
        evidence = Evidence()
        if original.parameters or relations.parameter_numbers(statement.tree):
            unknown = _unknown_parameters(original, statement)
            if unknown:
                return Outcome(OutcomeStatus.EXEC_ERROR,
                               f"the candidate uses parameter ${unknown[0]}, which the original does not have")
            _, explained, _ = self.session.explain_generic(statement.text)
            if explained.error is not None:
                return Outcome(OutcomeStatus.EXEC_ERROR, explained.error.message,
                               evidence=Evidence(sqlstate=explained.error.sqlstate, stage="explain (generic plan)"))
            evidence.parameters = original.parameters_json()
            statement = guard(relations.bind(statement.tree, {n: c.value for n, c in original.parameters.items()}))

        plan, explained = self.session.explain(statement.text)
        if explained.error is not None:
            evidence.sqlstate, evidence.stage = explained.error.sqlstate, "explain"
            return Outcome(OutcomeStatus.EXEC_ERROR, explained.error.message, evidence=evidence)
        divergence = plans.divergence(original.plan, plan)
        evidence.plan_after = plans.render(plan)
        evidence.plan_before = plans.render(original.plan)
        evidence.plan_changed = divergence.changed
        evidence.plan_divergence = PlanDivergenceEvidence(round(divergence.score, 4), tuple(divergence.differences))
        evidence.cost_before = plans.total_cost(original.plan)
        evidence.cost_after = plans.total_cost(plan)
        return statement, evidence, plan

    def _equivalence(self, original: OriginalProfile, statement: Statement, run: Run,
                     evidence: Evidence) -> Outcome | None:
        """Step 4 on a run of the candidate: None when equivalent, else the failing outcome."""
        if run.error is not None:
            evidence.sqlstate, evidence.stage = run.error.sqlstate, "execute"
            return Outcome(OutcomeStatus.EXEC_ERROR, run.error.message, evidence=evidence)
        if run.timed_out:
            return Outcome(OutcomeStatus.UNVERIFIABLE, "the candidate timed out before its result could be "
                           "compared", evidence=evidence)
        if run.too_many_rows or original.warmup.too_many_rows:
            return Outcome(OutcomeStatus.UNVERIFIABLE, f"the result is too large to compare: more than "
                           f"{self.session.max_rows} rows", evidence=evidence)
        shape = self._shape_difference(original.columns, run.columns)
        if shape:
            return Outcome(OutcomeStatus.SHAPE_MISMATCH, shape, evidence=evidence)
        order = equivalence.order_spec(original.statement.tree, [c.name for c in run.columns])
        if original.timed_out:
            return self._on_instances_alone(original, statement, order, evidence)

        left, right = original.warmup.result, run.result
        comparison = equivalence.compare_digests(left, right, order)
        evidence.equivalence = EquivalenceEvidence(
            method="result multiset on live data" + (", order-aware" if order.ordered else ""),
            rows=left.count,
            candidate_rows=right.count,
            original_hash=left.multiset_hash,
            candidate_hash=right.multiset_hash,
            note=comparison.reason,
            examples=None if comparison.equal or not comparison.verifiable else comparison.examples,
        )
        if not comparison.verifiable:
            return Outcome(OutcomeStatus.UNVERIFIABLE, comparison.reason, evidence=evidence)
        if not comparison.equal:
            counterexample = {"instance": "live data", "difference": comparison.reason,
                              "examples": comparison.examples}
            return Outcome(OutcomeStatus.NOT_EQUIVALENT, comparison.reason, evidence=evidence,
                           counterexample=counterexample)
        if self.config.perturbed_instances:
            report = differential.check(self.session, original.statement.tree, statement.tree, order,
                                        self.config.instances)
            evidence.perturbed_instances = report
            if report.counterexample is not None:
                cx = report.counterexample
                return Outcome(OutcomeStatus.NOT_EQUIVALENT,
                               f"differs on a perturbed instance ({cx['instance']}): {cx['difference']}",
                               evidence=evidence, counterexample=cx)
        return None

    def _on_instances_alone(self, original: OriginalProfile, statement: Statement,
                            order: equivalence.OrderSpec, evidence: Evidence) -> Outcome | None:
        """The original's result on the live data is unknown: sampled and perturbed instances decide,
        and only when at least `differential.MIN_INFORMATIVE` give the original a non-empty result."""
        cap = self.config.statement_timeout_ms
        report = differential.check_informative(self.session, original.statement.tree, statement.tree, order,
                                                self.config.instances)
        evidence.perturbed_instances = report
        informative = differential.informative(report)
        evidence.equivalence = EquivalenceEvidence(
            method=f"sampled and perturbed instances only: the original does not finish on the live data "
                   f"within {cap} ms",
            instances=len(report.tried), informative_instances=informative)
        if report.counterexample is not None:
            cx = report.counterexample
            return Outcome(OutcomeStatus.NOT_EQUIVALENT, f"differs on an instance ({cx['instance']}): "
                           f"{cx['difference']}", evidence=evidence, counterexample=cx)
        if report.skipped or informative < differential.MIN_INFORMATIVE:
            why = report.skipped or (f"only {informative} instance(s) gave the original a non-empty, non-NULL "
                                     f"result to compare (at least {differential.MIN_INFORMATIVE} are needed)")
            return Outcome(OutcomeStatus.UNVERIFIABLE, f"the original timed out, and {why}", evidence=evidence)
        return None

    def _shape_difference(self, original: Sequence[Column], candidate: Sequence[Column]) -> str:
        if len(original) != len(candidate):
            return f"the candidate returns {len(candidate)} columns; the original returns {len(original)}"
        if not self.config.strict_shape:
            return ""
        for i, (x, y) in enumerate(zip(original, candidate, strict=True), start=1):
            if x.name != y.name:
                return f"column {i} is named {y.name!r}; the original names it {x.name!r}"
            if x.type_oid != y.type_oid:
                return f"column {i} ({x.name}) has type oid {y.type_oid}; the original has {x.type_oid}"
        return ""

    def _beyond_cap(self, original: OriginalProfile, statement: Statement, evidence: Evidence) -> Outcome:
        """The original does not finish within the cap: instances for equivalence, a lower bound for speed."""
        cap = self.config.statement_timeout_ms
        evidence.original_timed_out_ms = cap
        if not self.config.beyond_cap:
            return Outcome(OutcomeStatus.UNVERIFIABLE, "the original timed out", evidence=evidence)
        # Only a candidate beyond the dead zone even against the cap is worth the instances.
        candidate_cap = max(1, int(cap / (1.0 + self.config.dead_zone)))
        run = self.session.run(statement.text, timeout_ms=candidate_cap)
        if run.timed_out:
            return Outcome(OutcomeStatus.UNVERIFIABLE, f"the original does not finish within {cap} ms "
                           f"and the candidate not within {candidate_cap} ms", evidence=evidence)
        failed = self._equivalence(original, statement, run, evidence)
        if failed is not None:
            return failed
        if not evidence.plan_changed:
            return _unchanged_plan(evidence)
        samples: list[float] = []
        for _ in range(self.config.timed_runs):
            timed = self.session.run(statement.text, timeout_ms=candidate_cap, fetch=False)
            if timed.error is not None or timed.timed_out:
                return Outcome(OutcomeStatus.UNVERIFIABLE, "a timed run of the candidate failed or reached "
                               f"{candidate_cap} ms", evidence=evidence)
            samples.append(timed.elapsed_ms)
        t_r = timing.median_ms(samples)
        ratio = timing.speedup(float(cap), t_r)
        evidence.latencies = Latencies(original=(), candidate=tuple(samples), original_at_least=cap,
                                       candidate_spread=timing.spread_ms(samples))
        evidence.speedup_is_lower_bound = True
        assert evidence.equivalence is not None
        detail = (f"at least {ratio:.1f}x: the original does not finish within {cap} ms, the candidate takes "
                  f"{t_r:.1f} ms (median of {len(samples)}); results agree on "
                  f"{evidence.equivalence.informative_instances} non-empty instance(s) of "
                  f"{evidence.equivalence.instances}, not compared on the live data")
        return Outcome(OutcomeStatus.FASTER, detail, speedup=ratio, original_ms=float(cap), candidate_ms=t_r,
                       evidence=evidence)

    def _candidate_cap(self, original: OriginalProfile) -> int:
        cap = original.warmup.elapsed_ms * self.config.candidate_timeout_factor
        return int(min(self.config.statement_timeout_ms, max(1_000.0, cap)))

    def _measure(self, original: OriginalProfile, statement: Statement, cap: int, evidence: Evidence) -> Outcome:
        original_ms: list[float] = []
        candidate_ms: list[float] = []
        candidate_timeouts = original_timeouts = 0
        for _ in range(self.config.timed_runs):
            q = self.session.run(original.sql, fetch=False)
            r = self.session.run(statement.text, timeout_ms=cap, fetch=False)
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
        evidence.latencies = Latencies(
            original=tuple(original_ms), candidate=tuple(candidate_ms),
            original_spread=timing.spread_ms(original_ms), candidate_spread=timing.spread_ms(candidate_ms),
            warmup_original=original.warmup.elapsed_ms, candidate_timeouts=candidate_timeouts,
            candidate_cap_ms=cap)
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
            evidence.speedup_is_lower_bound = True
            evidence.original_timeouts_while_timed = original_timeouts
            detail = (f"at least {detail}; the original hit the {self.config.statement_timeout_ms} ms cap in "
                      f"{original_timeouts} of its timed runs (counted at the cap)")
        return Outcome(status, detail, speedup=ratio, original_ms=t_q, candidate_ms=t_r, evidence=evidence)


def _admitted(query: Statement | str) -> Statement:
    return query if isinstance(query, Statement) else guard(query)


def _unknown_parameters(original: OriginalProfile, statement: Statement) -> list[int]:
    return sorted(set(relations.parameter_numbers(statement.tree)) - set(original.parameters))


def _unchanged_plan(evidence: Evidence) -> Outcome:
    return Outcome(OutcomeStatus.EQUIVALENT, "equivalent; the plan is unchanged, so the speed is too (not timed)",
                   evidence=evidence)


def _raise_for_original(run: Run) -> None:
    if run.error is None:
        return
    if run.error.kind == "InsufficientPrivilege":
        raise PermissionRefused(run.error.message)
    raise OriginalError(f"the query does not run: {run.error.message}", run.error.sqlstate)
