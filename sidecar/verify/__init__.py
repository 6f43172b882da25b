"""The verification core: decides whether a candidate is a valid, equivalent, faster rewrite.

A leaf package: it imports nothing else from this repository, and no model, gRPC or torch code.
The same code answers `laser_rewrite`, computes training rewards and scores benchmarks.
"""
from __future__ import annotations

from sidecar.verify.evidence import Evidence
from sidecar.verify.guard import GuardError, Statement, guard
from sidecar.verify.outcome import Outcome, OutcomeStatus
from sidecar.verify.session import ReadOnlySession, SessionError
from sidecar.verify.verifier import Estimate, OriginalError, OriginalProfile, Verifier, VerifierConfig

__all__ = [
    "Estimate",
    "Evidence",
    "GuardError",
    "Statement",
    "guard",
    "Outcome",
    "OutcomeStatus",
    "ReadOnlySession",
    "SessionError",
    "OriginalError",
    "OriginalProfile",
    "VerifierConfig",
    "Verifier",
]
