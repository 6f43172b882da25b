"""Runs the runnable examples in the docstrings of every module (sqlglot's habit)."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import laser_db
import pytest

import laser
import model
import sidecar


def _modules() -> list[str]:
    names = []
    for package in (sidecar, model, laser, laser_db):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_doctests_exist() -> None:
    """The pure cores carry examples; a module losing all of them is a regression."""
    attempted = 0
    for name in ("sidecar.verify.equivalence", "sidecar.verify.timing", "sidecar.verify.guard",
                 "sidecar.verify.textdiff", "sidecar.verify.plans"):
        attempted += doctest.testmod(importlib.import_module(name)).attempted
    assert attempted >= 20
