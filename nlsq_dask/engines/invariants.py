"""Checks on the data of a dask fit that cost no extra read.

Every partition's kernel also returns a summary of its inputs
(:func:`~nlsq_dask.solver.block_summary`: usable points, sums of y, x and 1/σ, points
with σ ≤ 0). The :class:`PartitionLedger` keeps the first summary of each partition and

* after the first pass that covers all partitions, refuses a fit with fewer usable
  points than parameters (none at all included) — the lazy counterpart of the checks
  numpy inputs get up front;
* on any pass, refuses σ that are zero or negative (numpy inputs are refused up front);
* on every later pass, stops with :class:`~nlsq_dask.errors.DataChangedError` naming
  the partition when its summary differs: its source was rewritten, lost a chunk or
  returns other values between passes, and iterating on would mix two datasets.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataChangedError, InsufficientDataError

# Sums may be computed by differently fused kernels (one start or several), so they
# are compared to this relative precision of their absolute sums; counts exactly.
SUM_RTOL = 1e-10
_POINTS, _SUM_Y, _ABS_Y, _SUM_X, _ABS_X, _SUM_W, _BAD_SIGMA = range(7)


def insufficient_data(n_usable: int, n_params: int, where: str = "") -> InsufficientDataError:
    """The error for a fit with fewer usable points than parameters (scipy's wording)."""
    detail = ("no usable data point (every point has a NaN or inf in x, y or sigma)"
              if n_usable == 0 else f"only {n_usable} usable data point(s)")
    return InsufficientDataError(
        f"The number of func parameters={n_params} must not exceed the number of data "
        f"points={n_usable}: {detail}{where}. Check the data for NaN/inf, or fit fewer "
        "parameters")


def require_points(n_usable: int, n_params: int, where: str = "") -> None:
    """Raise :func:`insufficient_data` unless ``n_usable >= n_params`` (and > 0)."""
    if n_usable < max(n_params, 1):
        raise insufficient_data(n_usable, n_params, where)


def check_materialised(xs, y, w, n_params: int) -> None:
    """The checks of :class:`PartitionLedger` on lazy data computed into memory (STANDARD)."""
    ok = np.isfinite(y)
    for x in xs:
        ok &= np.isfinite(x)
    if w is not None:
        bad = int(np.count_nonzero((w < 0) | (w == np.inf)))
        if bad:
            raise ValueError(f"sigma must be positive everywhere: {bad:,} point(s) have "
                             "sigma <= 0. Give every point a positive uncertainty, or NaN to "
                             "leave the point out")
        ok &= np.isfinite(w)
    require_points(int(np.count_nonzero(ok)), n_params)


class PartitionLedger:
    """First-seen summaries of a fit's partitions and the checks made against them.

    Parameters
    ----------
    chunks : tuple of int
        Points per partition.
    n_params : int
        Parameters of the model.
    source : str
        How to name the data in a message (e.g. the zarr arrays behind it).
    """

    def __init__(self, chunks, n_params: int, source: str = ""):
        self.starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        self.n_params = int(n_params)
        self.source = source
        self.first: np.ndarray | None = None
        self.seen = np.zeros(len(chunks), dtype=bool)
        self.counted = False

    def _where(self, i: int) -> str:
        src = f" of {self.source}" if self.source else ""
        return f"partition {i} (points {self.starts[i]:,}-{self.starts[i + 1] - 1:,}){src}"

    def check(self, summary: np.ndarray, parts=None) -> None:
        """Check one pass's summaries, ``(len(parts), k)`` rows for ``parts`` (default all)."""
        summary = np.asarray(summary, dtype=np.float64).reshape(-1, 7)
        parts = np.arange(len(self.seen)) if parts is None else np.asarray(parts, dtype=np.int64)
        if self.first is None:
            self.first = np.zeros((len(self.seen), summary.shape[1]))
        bad = np.flatnonzero(summary[:, _BAD_SIGMA] > 0)
        if bad.size:
            i = int(parts[bad[0]])
            total = int(summary[:, _BAD_SIGMA].sum())
            raise ValueError(f"sigma must be positive everywhere: {total:,} point(s) have "
                             f"sigma <= 0, the first in {self._where(i)}. Give every point a "
                             "positive uncertainty, or NaN to leave the point out")
        old = self.seen[parts]
        for j in np.flatnonzero(old):
            self._compare(int(parts[j]), self.first[parts[j]], summary[j])
        new = ~old
        self.first[parts[new]] = summary[new]
        self.seen[parts[new]] = True
        if not self.counted and self.seen.all():
            self.counted = True
            src = f" in {self.source}" if self.source else ""
            require_points(int(self.first[:, _POINTS].sum()), self.n_params, src)

    def _compare(self, i: int, before: np.ndarray, now: np.ndarray) -> None:
        changes = []
        if now[_POINTS] != before[_POINTS]:
            changes.append(f"usable points {int(before[_POINTS]):,} -> {int(now[_POINTS]):,}")
        for name, s, a in (("sum of y", _SUM_Y, _ABS_Y), ("sum of x", _SUM_X, _ABS_X),
                           ("sum of 1/sigma", _SUM_W, _SUM_W)):
            tol = SUM_RTOL * max(abs(before[a]), np.finfo(float).tiny)
            if abs(now[s] - before[s]) > tol or abs(now[a] - before[a]) > tol:
                changes.append(f"{name} {before[s]:.17g} -> {now[s]:.17g}")
        if changes:
            raise DataChangedError(
                f"the data of {self._where(i)} changed between passes of this fit "
                f"({'; '.join(changes)}): its source was rewritten, lost a chunk or returns "
                "different values on each read. A fit over changing data has no meaning: "
                "restore the data (or finish writing it) and fit again")
