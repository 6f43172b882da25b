"""Run a workload: measure each original and each method's output under one protocol, resumably.

A *method* proposes an output query for each workload query: the sidecar's own pipeline (its
backend, then its verifier), or a replay file of another system's rewrites. The runner measures
every distinct output once per query (methods that agree share a measurement), checks it against
the original's result, and appends one JSON line per finished query to a progress file, so an
interrupted run picks up where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from laser.bench.metrics import Output, aggregate, distribution, summarize, verdict_mark
from laser.bench.workloads import BenchQuery
from sidecar.verify import GuardError, OutcomeStatus, ReadOnlySession, Statement, Verifier, VerifierConfig, guard
from sidecar.verify.session import Run
from sidecar.verify.verifier import OriginalError, OriginalProfile

ORIGINAL = "original"


class BenchError(RuntimeError):
    """A benchmark cannot start or go on (bad options, mismatched progress file, unreachable database)."""


@dataclass(frozen=True)
class Protocol:
    """How each query is timed: warm-up runs, timed runs, their aggregate, and the cap."""

    name: str = "laser"
    warmups: int = 1
    runs: int = 3
    trim: bool = False
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.warmups < 0 or self.runs < 1:
            raise BenchError("a protocol needs at least one timed run and no negative warm-ups")
        if self.trim and self.runs < 3:
            raise BenchError("dropping min and max needs at least three timed runs")
        if self.timeout_s <= 0:
            raise BenchError("the timeout must be positive")

    @classmethod
    def named(cls, name: str, timeout_s: float = 300.0) -> Protocol:
        """`laser`: one warm-up, three runs, mean (LASER §6.1.4, QUITE, SPA).
        `e3`: five runs, mean after dropping the fastest and slowest (E3)."""
        if name == "laser":
            return cls("laser", 1, 3, False, timeout_s)
        if name == "e3":
            return cls("e3", 0, 5, True, timeout_s)
        raise BenchError(f"unknown protocol {name!r}; choose laser or e3")

    def describe(self) -> str:
        how = "mean without min and max" if self.trim else "mean"
        return f"{self.warmups} warm-up + {self.runs} runs (the original's and the rewrites' in turn), {how}, " \
               f"{self.timeout_s:g} s cap"


@dataclass
class Measurement:
    """The timed executions of one query text."""

    latency_s: float | None = None
    samples_s: list[float] = field(default_factory=list)
    timed_out: bool = False
    error: str = ""
    first: Run | None = None
    """Its first execution (with its rows, unless it timed out): what the equivalence check compares."""

    def to_json(self) -> dict[str, Any]:
        return {"latency_s": _round(self.latency_s), "samples_s": [_round(s) for s in self.samples_s],
                "timed_out": self.timed_out, "error": self.error,
                "rows": self.first.row_count if self.first is not None else None}


class Timing:
    """The protocol's executions of one query text, one at a time, so that several texts can alternate.

    A run that hits the cap ends the measurement with the cap as the latency (the papers' timeout
    rule), so a query that times out costs one cap, not four; an error or too many rows ends it too.
    """

    def __init__(self, sql: str, protocol: Protocol) -> None:
        self.sql, self.protocol = sql, protocol
        self.result = Measurement()
        self.done_runs = 0
        self.finished = False

    @property
    def warming(self) -> bool:
        return not self.finished and self.done_runs < self.protocol.warmups

    def step(self, session: ReadOnlySession) -> None:
        """Execute the next warm-up or timed run."""
        if self.finished:
            return
        protocol, result = self.protocol, self.result
        # Only the first run keeps a digest of the result; the others stream it by, counted.
        run = session.run(self.sql, timeout_ms=int(protocol.timeout_s * 1000), fetch=result.first is None)
        timed = self.done_runs >= protocol.warmups
        self.done_runs += 1
        if result.first is None:
            result.first = run
        if run.timed_out:
            result.timed_out, result.latency_s = True, protocol.timeout_s
            result.samples_s.append(protocol.timeout_s)
            self.finished = True
        elif run.error is not None or run.too_many_rows:
            result.error = run.error.message if run.error else f"more than {session.max_rows} rows"
            self.finished = True
        else:
            if timed:
                result.samples_s.append(min(run.elapsed_ms / 1000.0, protocol.timeout_s))
            if self.done_runs == protocol.warmups + protocol.runs:
                result.latency_s = aggregate(result.samples_s, protocol.trim)
                self.finished = True


def measure_interleaved(session: ReadOnlySession, timings: Sequence[Timing]) -> None:
    """Warm up every text, then alternate their timed runs (A, B, C, A, B, C, ...), so that a drift in
    the machine's speed (caches, other load) hits all of them alike and sub-50 ms comparisons hold."""
    for timing in timings:
        while timing.warming:
            timing.step(session)
    while any(not t.finished for t in timings):
        for timing in timings:
            timing.step(session)


def measure(session: ReadOnlySession, sql: str, protocol: Protocol) -> Measurement:
    """Warm-up and timed runs of `sql` alone; the first execution is kept for the result check."""
    timing = Timing(sql, protocol)
    measure_interleaved(session, [timing])
    return timing.result


@dataclass(frozen=True)
class Proposal:
    """A method's output for one query: a rewrite, or None to keep the original."""

    sql: str | None
    generation_s: float = 0.0
    verification_s: float = 0.0
    note: str = ""


class Method(TypingProtocol):
    name: str

    def propose(self, query: BenchQuery) -> Proposal: ...

    def fingerprint(self) -> str: ...


class ReplayMethod:
    """Another system's rewrites, from a JSON list of `{id, rewritten_query}`."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BenchError(f"cannot read replay file {path}: {exc}") from None
        if not isinstance(entries, list):
            raise BenchError(f"replay file {path} must hold a JSON list of {{id, rewritten_query}}")
        self.rewrites: dict[str, str] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise BenchError(f"replay file {path}, entry {i}: needs a string 'id'")
            text = entry.get("rewritten_query", entry.get("rewrite"))
            if text is not None and not isinstance(text, str):
                raise BenchError(f"replay file {path}, entry {entry['id']}: rewritten_query must be text or null")
            self.rewrites[entry["id"]] = text or ""
        self._digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    def propose(self, query: BenchQuery) -> Proposal:
        if query.id not in self.rewrites:
            return Proposal(None, note="no rewrite for this id in the replay file")
        text = self.rewrites[query.id]
        return Proposal(text if text.strip() else None, note="" if text.strip() else "empty rewrite")

    def fingerprint(self) -> str:
        return f"replay:{self.name}:{self._digest}"


class PipelineMethod:
    """The sidecar's rewrite pipeline, in process: a backend's candidates, verified."""

    def __init__(self, dsn: str, backend_name: str = "rules", timeout_s: float = 300.0,
                 max_candidates: int | None = None, model_dir: str = "", device: str = "auto",
                 adapter: str = "", with_rules: bool = True, max_new_tokens: int = 1024, label: str = "") -> None:
        from sidecar.backends.errors import BackendError
        from sidecar.config import SidecarConfig
        from sidecar.pipeline import RewritePipeline

        params = conninfo_to_dict(dsn)
        self.database = str(params.pop("dbname", "") or "")
        self.role = str(params.get("user", "") or "")
        if not self.database:
            raise BenchError("the benchmark DSN must name a database (dbname=...)")
        self.name = label or (f"laser-{backend_name}" if backend_name == "rules" or not with_rules
                              else f"laser-rules+{backend_name}")
        self.timeout_ms = int(timeout_s * 1000)
        self.max_candidates = max_candidates
        self._setup = f"{backend_name}:{model_dir}:{adapter}:{with_rules}:{max_new_tokens}"
        try:
            config = SidecarConfig(dsn=make_conninfo("", **params), backend=backend_name, cache_ttl_s=0,
                                   model_dir=model_dir, device=device, adapter=adapter,
                                   with_rules=with_rules, max_new_tokens=max_new_tokens)
            self.pipeline = RewritePipeline.from_config(config)
        except (ValueError, BackendError) as exc:
            raise BenchError(str(exc)) from None

    def propose(self, query: BenchQuery) -> Proposal:
        from sidecar.pipeline import RequestError, RequestOptions
        from sidecar.verify import SessionError

        options = RequestOptions(statement_timeout_ms=self.timeout_ms, no_cache=True,
                                 max_candidates=self.max_candidates)
        try:
            result = self.pipeline.rewrite(query.sql, self.database, self.role, options=options)
        except (GuardError, OriginalError, RequestError, SessionError) as exc:
            # the pipeline's refusal is this method's answer: keep the original
            return Proposal(None, note=f"{type(exc).__name__}: {exc}")
        sql = result.rewritten_sql if result.status == "improved" else None
        return Proposal(sql, result.generation_ms / 1000.0, result.verification_ms / 1000.0, result.message)

    def fingerprint(self) -> str:
        return f"pipeline:{self.name}:{self.max_candidates}:{self._setup}"


def _normalized(sql: str) -> str:
    return " ".join(sql.strip().rstrip(";").split())


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


Progress = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Runner:
    """Measures a workload for the original and every method; see the module docstring."""

    def __init__(self, dsn: str, methods: Sequence[Method], protocol: Protocol,
                 equiv_timeout_s: float | None = None, progress: Progress | None = _stderr) -> None:
        names = [ORIGINAL, *(m.name for m in methods)]
        if len(set(names)) != len(names):
            raise BenchError(f"method names must be distinct: {names}")
        self.dsn = dsn
        self.methods = list(methods)
        self.protocol = protocol
        self.equiv_timeout_s = equiv_timeout_s
        self.progress = progress or (lambda line: None)

    def fingerprint(self, queries: Sequence[BenchQuery]) -> dict[str, Any]:
        digest = hashlib.sha256("\n".join(f"{q.id}\t{q.sql}" for q in queries).encode()).hexdigest()[:16]
        return {"queries": digest, "protocol": asdict(self.protocol), "equiv_timeout_s": self.equiv_timeout_s,
                "methods": [m.fingerprint() for m in self.methods]}

    def run(self, queries: Sequence[BenchQuery], state: Path | None = None, fresh: bool = False) -> list[dict[str,
        Any]]:
        """Per-query records, in workload order; finished ones are read back from `state`."""
        if len({q.id for q in queries}) != len(queries):
            raise BenchError("query ids must be unique within a workload")
        done = self._resume(queries, state, fresh)
        records: list[dict[str, Any]] = []
        started = time.monotonic()
        measured = 0
        with ReadOnlySession.connect(self.dsn, None,
            statement_timeout_ms=int(self.protocol.timeout_s * 1000)) as session:
            verifier = Verifier(session, self.verifier_config())
            for i, query in enumerate(queries, start=1):
                if query.id in done:
                    records.append(done[query.id])
                    continue
                record = self._query(verifier, query)
                records.append(record)
                measured += 1
                if state is not None:
                    with state.open("a") as f:
                        f.write(json.dumps(record, default=str) + "\n")
                self.progress(_progress_line(i, len(queries), record, started, measured,
                                             len(queries) - i))
        return records

    def _resume(self, queries: Sequence[BenchQuery], state: Path | None, fresh: bool) -> dict[str, dict[str, Any]]:
        if state is None:
            return {}
        header = {"fingerprint": self.fingerprint(queries)}
        if fresh or not state.exists():
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps(header) + "\n")
            return {}
        lines = state.read_text().splitlines()
        try:
            found = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            found = {}
        if found != json.loads(json.dumps(header)):
            raise BenchError(f"{state} holds a run with other queries, methods or protocol; "
                             "pass --fresh to start over")
        done: dict[str, dict[str, Any]] = {}
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption: that query is measured again
            done[record["id"]] = record
        if done:
            self.progress(f"resuming: {len(done)} of {len(queries)} queries already measured in {state}")
        return done

    def verifier_config(self) -> VerifierConfig:
        """The verifier's settings for the benchmark's equivalence checks: the papers' definition (the
        results' values on the live data, column names free), and sampled and perturbed instances
        for an original beyond the cap."""
        return VerifierConfig(statement_timeout_ms=int(self.protocol.timeout_s * 1000), perturbed_instances=False,
                              strict_shape=False)

    def _query(self, verifier: Verifier, query: BenchQuery) -> dict[str, Any]:
        session = verifier.session
        original = Timing(query.sql, self.protocol)
        original.step(session)  # an original that fails is excluded before any method proposes
        record: dict[str, Any] = {"id": query.id, "template": query.template, "sql": query.sql,
                                  "params": query.params, ORIGINAL: None, "methods": {}}
        if original.result.error:
            record[ORIGINAL] = original.result.to_json()
            record["excluded"] = f"the original fails: {original.result.error}"
            return record
        proposals = {m.name: m.propose(query) for m in self.methods}
        rewrites = {_normalized(p.sql): p.sql for p in proposals.values()
                    if p.sql is not None and _normalized(p.sql) != _normalized(query.sql)}
        warmup = original.result.first
        longer = bool(self.equiv_timeout_s and self.equiv_timeout_s > self.protocol.timeout_s)
        extra: dict[str, Any] = {}
        if original.result.timed_out and longer and rewrites:
            run = session.run(query.sql, timeout_ms=int((self.equiv_timeout_s or 0) * 1000))
            if run.ok:
                warmup = run
                extra["result_within_s"] = _round(run.elapsed_ms / 1000.0)
        try:
            profile: OriginalProfile | None = verifier.prepare(query.sql, warmup=warmup)
        except (GuardError, OriginalError) as exc:
            profile = None
            extra["not_comparable"] = str(exc)
        candidates = {key: self._vetted(verifier, sql) for key, sql in rewrites.items()}
        measure_interleaved(session, [original, *(c.timing for c in candidates.values() if c.timing is not None)])
        judged = {key: self._judged(verifier, profile, candidate) for key, candidate in candidates.items()}
        record[ORIGINAL] = {**original.result.to_json(), **extra}
        for name, proposal in proposals.items():
            record["methods"][name] = self._output(query, original.result, proposal, judged)
        return record

    @staticmethod
    def _output(query: BenchQuery, original: Measurement, proposal: Proposal,
                judged: dict[str, tuple[Measurement, bool, bool | None, str]]) -> dict[str, Any]:
        entry: dict[str, Any] = {"generation_s": _round(proposal.generation_s),
                                 "verification_s": _round(proposal.verification_s), "note": proposal.note}
        if proposal.sql is None or _normalized(proposal.sql) == _normalized(query.sql):
            entry.update(sql=None, changed=False, valid=True, equivalent=True,
                         latency_s=original.latency_s, timed_out=original.timed_out)
            return _finish(entry, original.latency_s)
        result, valid, equivalent, reason = judged[_normalized(proposal.sql)]
        entry.update(sql=proposal.sql, changed=True, valid=valid, equivalent=equivalent,
                     equivalence_note=reason, **{k: v for k, v in result.to_json().items() if k != "rows"})
        return _finish(entry, original.latency_s)

    def _vetted(self, verifier: Verifier, sql: str) -> _Candidate:
        """A rewrite admitted by the guard and planned by EXPLAIN gets a timing; otherwise why not."""
        try:
            statement = guard(sql)
        except GuardError as exc:
            return _Candidate(None, Measurement(error=str(exc)), False, "refused by the guard, not run")
        _, explained = verifier.session.explain(statement.text, timeout_ms=int(self.protocol.timeout_s * 1000))
        if explained.error is not None:
            return _Candidate(None, Measurement(error=explained.error.message), False, "EXPLAIN failed")
        return _Candidate(Timing(statement.text, self.protocol), None, True, "", statement)

    @staticmethod
    def _judged(verifier: Verifier, profile: OriginalProfile | None,
                candidate: _Candidate) -> tuple[Measurement, bool, bool | None, str]:
        """Valid (admitted and planned), measured under the protocol, and judged by the verifier."""
        if candidate.timing is None or candidate.statement is None:
            assert candidate.failed is not None
            return candidate.failed, candidate.valid, None, candidate.reason
        result = candidate.timing.result
        if result.error:
            return result, True, None, "the rewrite fails when run"
        if profile is None or result.first is None:
            return result, True, None, "the original's result is unknown (it failed)"
        outcome = verifier.check_equivalence(profile, candidate.statement, run=result.first)
        if outcome.status is OutcomeStatus.EQUIVALENT:
            return result, True, True, outcome.detail
        if outcome.status in (OutcomeStatus.NOT_EQUIVALENT, OutcomeStatus.SHAPE_MISMATCH):
            return result, True, False, outcome.detail
        return result, True, None, outcome.detail


@dataclass
class _Candidate:
    """A distinct rewrite of one query: its timing, or the measurement that says why it was not run."""

    timing: Timing | None
    failed: Measurement | None
    valid: bool
    reason: str
    statement: Statement | None = None


def _finish(entry: dict[str, Any], original_s: float | None) -> dict[str, Any]:
    output = output_of(entry, original_s or 0.0)
    entry["counted_s"] = _round(output.counted_s)
    entry["speedup"] = round(output.speedup, 4)
    return entry


def output_of(entry: dict[str, Any], original_s: float) -> Output:
    """The metrics' view of one method's entry in a query record."""
    return Output(original_s=original_s, latency_s=entry.get("latency_s"), valid=bool(entry["valid"]),
                  equivalent=entry.get("equivalent"), timed_out=bool(entry.get("timed_out")),
                  changed=bool(entry.get("changed")))


def summaries(records: Iterable[dict[str, Any]], methods: Sequence[str], cap_s: float) -> dict[str, Any]:
    """The metrics per method (the original included) over the records that were not excluded."""
    kept = [r for r in records if "excluded" not in r]
    if not kept:
        raise BenchError("no query of the workload could be measured")
    result: dict[str, Any] = {}
    originals = [Output(r[ORIGINAL]["latency_s"], r[ORIGINAL]["latency_s"], True, True,
                        timed_out=r[ORIGINAL]["timed_out"], changed=False) for r in kept]
    result[ORIGINAL] = summarize(originals, cap_s)
    for name in methods:
        outputs = [output_of(r["methods"][name], r[ORIGINAL]["latency_s"]) for r in kept]
        summary = summarize(outputs, cap_s)
        summary["rewrite_time_s"] = {
            "generation": distribution([r["methods"][name]["generation_s"] or 0.0 for r in kept]),
            "verification": distribution([r["methods"][name]["verification_s"] or 0.0 for r in kept]),
        }
        result[name] = summary
    return result


def _progress_line(i: int, n: int, record: dict[str, Any], started: float, measured: int, left: int) -> str:
    width = 24
    filled = int(width * i / n)
    bar = "#" * filled + "." * (width - filled)
    elapsed = time.monotonic() - started
    eta = elapsed / measured * left if measured else 0.0
    original = record[ORIGINAL]
    if "excluded" in record:
        detail = record["excluded"][:60]
    else:
        parts = [f"original {_fmt_s(original['latency_s'], original['timed_out'])}"]
        for name, entry in record["methods"].items():
            if entry["changed"]:
                state = "" if entry["valid"] and entry["equivalent"] else verdict_mark(entry)
                parts.append(f"{name} {_fmt_s(entry.get('latency_s'), entry.get('timed_out', False))}"
                             f" {entry['speedup']:.2f}x{state}")
            else:
                parts.append(f"{name} kept")
        detail = " | ".join(parts)
    return f"[{bar}] {i}/{n} {record['id']}: {detail}  ({_clock(elapsed)} elapsed, ~{_clock(eta)} left)"


def _fmt_s(value: float | None, timed_out: bool) -> str:
    if value is None:
        return "failed"
    return f"≥{value:.0f} s (timeout)" if timed_out else f"{value:.3f} s"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
