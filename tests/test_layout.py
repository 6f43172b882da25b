"""The design's import rules, checked on the source: the verifier is a leaf, and so on.

Imports are read from the source (function-level imports included), and the rules about what a
package may reach are checked on the whole closure of its imports, not only on its own lines.
"""
from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from package import module` imports package.module (harmless for a class or function)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _files(*parts: str) -> list[Path]:
    return sorted(p for p in ROOT.joinpath(*parts).rglob("*.py") if "__pycache__" not in p.parts)


FORBIDDEN_IN_VERIFIER = ("grpc", "laser_proto", "laser_db", "torch", "transformers", "vllm", "model",
                         "sidecar.backends", "sidecar.rules", "sidecar.server", "sidecar.pipeline")


@pytest.mark.parametrize("path", _files("sidecar", "verify"), ids=lambda p: p.name)
def test_verifier_is_a_leaf(path: Path) -> None:
    for name in _imports(path):
        assert not (name.startswith("sidecar.") and not name.startswith("sidecar.verify")), name
        assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_VERIFIER), name


@pytest.mark.parametrize("path", _files("sidecar"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_service_never_imports_training_or_tooling(path: Path) -> None:
    for name in _imports(path):
        assert name.split(".")[0] not in ("model", "laser"), f"{path.name} imports {name}"


PACKAGE_ROOTS = {"sidecar": ROOT / "sidecar", "model": ROOT / "model", "laser": ROOT / "laser",
                 "laser_proto": ROOT / "proto" / "laser_proto", "laser_db": ROOT / "pg_extension" / "laser_db"}


def _module_path(name: str) -> Path | None:
    """The source file of a module of this repository, or None for a third-party module."""
    root, *rest = name.split(".")
    if root not in PACKAGE_ROOTS:
        return None
    base = PACKAGE_ROOTS[root].joinpath(*rest)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _closure(path: Path) -> set[str]:
    """Every module name reachable by imports from `path` (its parents' __init__ included)."""
    seen: set[str] = set()
    todo = [path]
    visited: set[Path] = set()
    while todo:
        current = todo.pop()
        if current in visited:
            continue
        visited.add(current)
        for name in _imports(current):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                prefix = ".".join(parts[:i])
                seen.add(prefix)
                found = _module_path(prefix)
                if found is not None:
                    todo.append(found)
    return seen


SERVER_SIDE = ("sidecar.server", "laser_proto", "grpc", "grpc_health", "laser.cli", "laser.daemon")


@pytest.mark.parametrize("path", _files("model") + _files("laser", "bench"), ids=lambda p: str(p.relative_to(ROOT)))
def test_training_and_evaluation_never_reach_the_server(path: Path) -> None:
    """model/ (training) and laser/bench/ (evaluation) use the verifier, the backends and the pipeline,
    never the gRPC server, its stubs or the command line, not even through another module."""
    reached = _closure(path)
    assert not [n for n in reached if any(n == s or n.startswith(s + ".") for s in SERVER_SIDE)]


@pytest.mark.parametrize("path", _files("pg_extension", "laser_db"), ids=lambda p: p.name)
def test_in_database_package_imports_only_stubs_grpc_and_itself(path: Path) -> None:
    allowed_roots = {"__future__", "json", "re", "time", "typing", "dataclasses", "collections", "pathlib", "tomllib",
                     "grpc", "laser_proto", "laser_db"}  # the standard library modules above are safe in a backend
    for name in _imports(path):
        assert name.split(".")[0] in allowed_roots, f"{path.name} imports {name}"
        assert "pglast" not in name  # crashes the server when imported in a backend


def test_generated_stubs_are_current() -> None:
    from laser_proto import generate

    with tempfile.TemporaryDirectory() as tmp:
        for fresh in generate.generate(Path(tmp)):
            checked_in = ROOT / "proto" / "laser_proto" / fresh.name
            assert checked_in.read_bytes() == fresh.read_bytes(), (
                f"{checked_in} is stale: run `python proto/laser_proto/generate.py`")
