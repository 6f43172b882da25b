"""The design's import rules, checked on the source: the verifier is a leaf, and so on."""
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
def test_sidecar_never_imports_model(path: Path) -> None:
    assert not any(n == "model" or n.startswith("model.") for n in _imports(path))


@pytest.mark.parametrize("path", _files("pg_extension", "laser_db"), ids=lambda p: p.name)
def test_in_database_package_imports_only_stubs_grpc_and_itself(path: Path) -> None:
    allowed_roots = {"__future__", "json", "re", "time", "typing", "dataclasses", "grpc", "laser_proto", "laser_db"}
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
