"""Benchmark reports: a markdown table shaped like the papers' tables, and PNG plots."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from laser.bench.metrics import THRESHOLDS, verdict_mark
from laser.bench.runner import ORIGINAL


def _pct(value: float) -> str:
    return f"{100.0 * value:.1f}%"


def _seconds(value: float, cap: float | None) -> str:
    text = f"{value:.3f}" if value < 10 else f"{value:.2f}"
    return f"≥{text}" if cap is not None and value >= cap else text


def markdown(result: dict[str, Any]) -> str:
    """The summary as markdown: one row per method (latencies in seconds, padded)."""
    meta = result["meta"]
    cap = meta["protocol"]["timeout_s"]
    header = ["Method", "Succ.", "Equiv.", "Mean", "P50", "P75", "P90", "P95", "Improved",
              *(f"Spd≥{k}×" for k in THRESHOLDS), *(f"Sld≥{k}×" for k in THRESHOLDS),
                  "Rewrite time (gen + verify, median)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, s in result["summary"].items():
        timing = s.get("rewrite_time_s")
        rewrite = (f"{timing['generation']['median']:.3f} + {timing['verification']['median']:.3f} s"
                   if timing else "—")
        cells = [name, _pct(s["succ"]), _pct(s["equiv"]),
                 *(_seconds(s[key], cap) for key in ("mean", "median", "p75", "p90", "p95")),
                 "—" if name == ORIGINAL else str(s["improved"]),
                 *("—" if name == ORIGINAL else str(s[f"spd_{k}x"]) for k in THRESHOLDS),
                 *("—" if name == ORIGINAL else str(s[f"sld_{k}x"]) for k in THRESHOLDS), rewrite]
        lines.append("| " + " | ".join(cells) + " |")
    n = next(iter(result["summary"].values()))["queries"]
    excluded = [r["id"] for r in result["queries"] if "excluded" in r]
    note = (f"\n{n} queries; {meta['protocol']['description']}; latencies in seconds, failed or "
            "non-equivalent rewrites padded with the original's latency; Improved = ≥ 1.1× faster.")
    if excluded:
        note += f" Excluded (the original fails): {', '.join(excluded)}."
    return "\n".join(lines) + "\n" + note + "\n"


def per_query_markdown(result: dict[str, Any]) -> str:
    """One row per query: the original's latency and each method's counted latency and speedup."""
    methods = [m for m in result["summary"] if m != ORIGINAL]
    header = ["Query", "Original (s)", *(f"{m} (s, ×)" for m in methods)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cap = result["meta"]["protocol"]["timeout_s"]
    for record in result["queries"]:
        if "excluded" in record:
            lines.append(f"| {record['id']} | excluded | " + " | ".join("—" for _ in methods) + " |")
            continue
        cells = [record["id"], _seconds(record[ORIGINAL]["latency_s"], cap)]
        for m in methods:
            entry = record["methods"][m]
            mark = "" if entry["changed"] else " (kept)"
            if entry["changed"] and not (entry["valid"] and entry["equivalent"]):
                mark = verdict_mark(entry)
            cells.append(f"{_seconds(entry['counted_s'], cap)}, {entry['speedup']:.2f}×{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], stem: Path) -> list[Path]:
    """Latency CDF per method and per-query speedup; returns the PNG paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = [r for r in result["queries"] if "excluded" not in r]
    methods = list(result["summary"])
    written: list[Path] = []
    title = f"{result['meta']['workload']} — {result['meta']['protocol']['description']}"

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in methods:
        values = sorted(r[ORIGINAL]["latency_s"] if name == ORIGINAL else r["methods"][name]["counted_s"]
                        for r in kept)
        ys = [(i + 1) / len(values) for i in range(len(values))]
        ax.step([max(v, 1e-4) for v in values], ys, where="post", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (s, padded, log scale)")
    ax.set_ylabel("fraction of queries")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    written.append(_save(plt, fig, ax, title, stem.with_name(stem.name + "-latency-cdf.png")))

    others = [m for m in methods if m != ORIGINAL]
    if others:
        fig, ax = plt.subplots(figsize=(max(7, 0.35 * len(kept) * max(1, len(others))), 4.5))
        width = 0.8 / len(others)
        for j, name in enumerate(others):
            speedups = [max(r["methods"][name]["speedup"], 1e-3) for r in kept]
            xs = [i + (j - (len(others) - 1) / 2) * width for i in range(len(kept))]
            ax.bar(xs, [math.log2(s) for s in speedups], width=width, label=name)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhline(1, color="green", linestyle=":", linewidth=0.8)  # 2x faster
        ax.axhline(-1, color="red", linestyle=":", linewidth=0.8)  # 2x slower
        ax.set_xticks(range(len(kept)), [r["id"] for r in kept], rotation=90, fontsize=7)
        ax.set_ylabel("log2 speedup (padded; >0 faster)")
        ax.grid(True, axis="y", alpha=0.3)
        written.append(_save(plt, fig, ax, title, stem.with_name(stem.name + "-speedup.png")))
    return written


def _save(plt: Any, fig: Any, ax: Any, title: str, path: Path) -> Path:
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
