"""`laser bench-ted`: the structural distance of LASER Eq. 3, ours against maintained tree edit
distance libraries, on the real ASTs of a corpus's (seed, slow) pairs.

Ours (`model.corpus.structure.distance`) is the length of sqlglot's ChangeDistiller edit script,
which is a heuristic matching, not an optimal edit distance. The references are exact
Zhang-Shasha (zss) and APTED (apted) on the same sqlglot trees, with unit costs and a node's label
being its expression type plus its own text for identifiers and literals. Each distance is divided
by the larger tree's size as in Eq. 3. Reported: time per pair (median, p90, total), and how our
values compare with the exact ones (mean absolute difference, Spearman rank correlation), since the
MCTS only uses Δ to rank variants (Eq. 4).

zss and apted are optional (`pip install zss apted`): a missing one is reported and skipped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlglot import exp

from model.corpus import structure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, required=True, help="a corpus JSONL written by `laser corpus`")
    parser.add_argument("--limit", type=int, default=100, help="pairs to measure at most (default 100)")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the per-pair values as JSON")


def label(node: exp.Expr) -> str:
    """A node's label: its type, and for an identifier or literal its text.

    >>> label(structure.parse("SELECT 1").expressions[0])
    'Literal:1'
    """
    name = type(node).__name__
    if isinstance(node, exp.Identifier | exp.Literal | exp.Var):
        return f"{name}:{node.this}"
    return name


def children(node: exp.Expr) -> list[exp.Expr]:
    return list(node.iter_expressions())


def ours(a: exp.Expr, b: exp.Expr) -> float:
    return structure.distance(a, b)


def _zss() -> Callable[[exp.Expr, exp.Expr], float] | None:
    try:
        import zss
    except ImportError:
        return None

    def distance(a: exp.Expr, b: exp.Expr) -> float:
        edits = zss.simple_distance(a, b, get_children=children, get_label=label,
                                    label_dist=lambda x, y: 0 if x == y else 1)
        return float(edits) / max(structure.size(a), structure.size(b))

    return distance


def _apted() -> Callable[[exp.Expr, exp.Expr], float] | None:
    try:
        from apted import APTED, Config
    except ImportError:
        return None

    class SqlglotConfig(Config):  # type: ignore[misc]
        def children(self, node: exp.Expr) -> list[exp.Expr]:
            return children(node)

        def rename(self, a: exp.Expr, b: exp.Expr) -> int:
            return 0 if label(a) == label(b) else 1

    def distance(a: exp.Expr, b: exp.Expr) -> float:
        edits = APTED(a, b, SqlglotConfig()).compute_edit_distance()
        return float(edits) / max(structure.size(a), structure.size(b))

    return distance


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties).

    >>> spearman([1, 2, 3], [10, 20, 30]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return result

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    norm = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return round(cov / norm, 6) if norm else 0.0


def main(args: argparse.Namespace) -> int:
    lines = [line for line in args.corpus.read_text().splitlines() if line.strip()][: args.limit]
    pairs = [(structure.parse(row["seed_sql"]), structure.parse(row["slow_sql"]))
             for row in map(json.loads, lines)]
    if not pairs:
        print(f"laser bench-ted: {args.corpus} holds no pairs")
        return 2
    methods: dict[str, Callable[[exp.Expr, exp.Expr], float] | None] = {
        "sqlglot diff (ours)": ours, "zss (Zhang-Shasha)": _zss(), "apted": _apted()}
    values: dict[str, list[float]] = {}
    times: dict[str, list[float]] = {}
    sizes = [max(structure.size(a), structure.size(b)) for a, b in pairs]
    print(f"{len(pairs)} pairs from {args.corpus}; AST size (larger of the two) median {statistics.median(sizes):.0f}, "
          f"max {max(sizes)} nodes")
    for name, method in methods.items():
        if method is None:
            print(f"  {name}: not installed, skipped")
            continue
        values[name], times[name] = [], []
        for index, (a, b) in enumerate(pairs, 1):
            clock = time.perf_counter()
            values[name].append(method(a, b))
            times[name].append((time.perf_counter() - clock) * 1000)
            if sys.stderr.isatty():
                print(f"\r  {name}: {index}/{len(pairs)}", end="", file=sys.stderr, flush=True)
        print(f"\r  {name}: {len(pairs)} pairs in {sum(times[name]) / 1000:.1f} s", file=sys.stderr)
    reference = next((name for name in ("apted", "zss (Zhang-Shasha)") if name in values), None)
    print(f"{'method':22} {'median ms':>10} {'p90 ms':>9} {'total s':>8} {'mean Δ':>7} "
          f"{'|Δ - exact|':>12} {'Spearman':>9}")
    report: dict[str, Any] = {"pairs": len(pairs), "sizes": sizes, "methods": {}}
    for name in values:
        ms = sorted(times[name])
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        gap = rho = float("nan")
        if reference is not None:
            gap = statistics.fmean(abs(x - y) for x, y in zip(values[name], values[reference], strict=True))
            rho = spearman(values[name], values[reference])
        print(f"{name:22} {statistics.median(ms):10.2f} {p90:9.2f} {sum(ms) / 1000:8.2f} "
              f"{statistics.fmean(values[name]):7.3f} {gap:12.3f} {rho:9.3f}")
        report["methods"][name] = {"ms": times[name], "distance": values[name]}
    if reference is not None:
        print(f"(exact reference: {reference})")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report, indent=1) + "\n")
    return 0
