"""Simulation by execution (LASER §4.2): the verifier's outcome for a variant, read as Φ, Tv/T0
and "timed out" (Eq. 2 and 5), and the stricter re-verification of a kept pair (§4.3).

Both go through the verifier's worker pool, so the corpus decides equivalence exactly as the
sidecar and the trainer do.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from model.corpus.mcts import Evaluation
from model.pool import Job, Verifies
from sidecar.verify import Outcome, OutcomeStatus, VerifierConfig


def simulation_config(timeout_ms: int) -> VerifierConfig:
    """Cheap enough to run for every variant: the live data decides equivalence (Eq. 2, the
    paper's sorted-result hash), one timed run each, interleaved with the seed's; a variant is
    cut at ``timeout_ms`` (Tmax) rather than at a multiple of the seed's time, and no text is
    too close to its seed to be executed."""
    return VerifierConfig(statement_timeout_ms=timeout_ms, timed_runs=1, perturbed_instances=False,
                          candidate_timeout_factor=1e9, min_edit_distance=0.0, dead_zone=0.0)


def pair_config(timeout_ms: int) -> VerifierConfig:
    """For a pair that is kept: the full verifier (perturbed instances, three interleaved timed
    runs), with the slow query as the original and the seed as the rewrite, as the model will see it."""
    return replace(VerifierConfig(), statement_timeout_ms=timeout_ms)


def as_evaluation(outcome: Outcome) -> Evaluation:
    """The verifier's outcome for (seed, variant) read as Eq. 2/5's inputs.

    >>> as_evaluation(Outcome(OutcomeStatus.SLOWER, "", speedup=0.25, original_ms=10, candidate_ms=40)).slowdown
    4.0
    >>> as_evaluation(Outcome(OutcomeStatus.NOT_EQUIVALENT, "differs")).valid
    False
    """
    evidence = outcome.evidence
    if outcome.status == OutcomeStatus.UNVERIFIABLE and evidence.candidate_timed_out_ms is not None:
        return Evaluation(valid=True, timed_out=True, detail=outcome.detail)
    if outcome.status == OutcomeStatus.EQUIVALENT:
        return Evaluation(valid=True, slowdown=1.0, detail=outcome.detail)
    if outcome.status.timed:
        latencies = evidence.latencies
        if latencies is not None and latencies.candidate_timeouts:
            return Evaluation(valid=True, timed_out=True, detail=outcome.detail)
        slowdown = outcome.candidate_ms / outcome.original_ms if outcome.original_ms > 0 else 1.0
        return Evaluation(valid=True, slowdown=slowdown, detail=outcome.detail)
    return Evaluation(valid=False, detail=f"{outcome.status.value}: {outcome.detail}")


class PoolEvaluator:
    """Evaluates a seed's variants on the pool, all of one expansion dispatched at once."""

    def __init__(self, pool: Verifies, seed: str, timeout_ms: int) -> None:
        self.pool = pool
        self.seed = seed
        self.config = simulation_config(timeout_ms)

    def __call__(self, variants: Sequence[str]) -> list[Evaluation]:
        jobs = [Job(self.seed, variant, config=self.config) for variant in variants]
        return [as_evaluation(outcome) for outcome in self.pool.verify_many(jobs)]
