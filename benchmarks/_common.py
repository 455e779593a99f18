"""Shared helpers of the benchmark scripts: timing and table printing."""

from __future__ import annotations

import platform
import time

import numpy as np


def best_time(fn, repeats: int = 3):
    """``(min seconds, last result)`` of ``repeats`` calls (after the caller's warm-up)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def print_table(title: str, header: list[str], rows: list[list]) -> str:
    """Print (and return) a plain-text table."""
    cells = [[str(c) for c in row] for row in [header] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"


def exp_data(n: int, seed: int = 0):
    """The spec's quick-start problem: ``y = 2 exp(-0.5 x) + 0.3 + noise``."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 10, n)
    return x, 2.0 * np.exp(-0.5 * x) + 0.3 + rng.normal(0, 0.05, n)
