"""Trivial-rewrite filter: normalized Levenshtein distance between two query texts (SPA §3.4)."""
from __future__ import annotations

import re

_SPACE = re.compile(r"\s+")


def normalize_text(sql: str) -> str:
    """Lower-case, collapse whitespace, drop a trailing semicolon.

    >>> normalize_text("SELECT  a\\n FROM t;")
    'select a from t'
    """
    return _SPACE.sub(" ", sql.strip().rstrip(";").strip().lower())


def normalized_edit_distance(a: str, b: str, threshold: float = 0.01) -> float:
    """Levenshtein(a, b) / max(len): exact below `threshold`, else a value ≥ threshold.

    Banded computation (Ukkonen): only distances up to threshold·max(len) are tracked, so long
    queries cost O(n·k), not O(n·m).

    >>> normalized_edit_distance("select a from t", "select a from t")
    0.0
    >>> normalized_edit_distance("select a from t", "select b from u", threshold=1.0)
    0.13333333333333333
    >>> normalized_edit_distance("x" * 1000, "x" * 999 + "y") < 0.01
    True
    """
    a, b = normalize_text(a), normalize_text(b)
    longest = max(len(a), len(b))
    if longest == 0:
        return 0.0
    band = int(threshold * longest) + 1
    if abs(len(a) - len(b)) > band:
        return max(threshold, abs(len(a) - len(b)) / longest)
    big = band + 1
    previous = [j if j <= band else big for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        current = [big] * (len(b) + 1)
        if i <= band:
            current[0] = i
        low, high = max(1, i - band), min(len(b), i + band)
        for j in range(low, high + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        previous = current
    distance = previous[len(b)]
    if distance > band:
        return max(threshold, band / longest)
    return distance / longest
