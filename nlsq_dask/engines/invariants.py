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

A resumed checkpointed fit seeds the ledger (:meth:`~PartitionLedger.seed`) with the
summaries stored when the partitions were first computed, so data changed between the
runs are caught in the first pass after the resume.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataChangedError, InsufficientDataError
from ..solver.stats import SUMMARY_FIELDS

# Sums may be computed by differently fused kernels (one start or several), so they
# are compared to this relative precision of their absolute sums; counts exactly.
SUM_RTOL = 1e-10
_COL = {name: i for i, name in enumerate(SUMMARY_FIELDS)}
_POINTS, _BAD_SIGMA = _COL["points"], _COL["bad_sigma"]
# (label, column of the sum, column of the absolute sum that scales its tolerance)
_SUMS = (("sum of y", _COL["sum_y"], _COL["sum_abs_y"]),
         ("sum of x", _COL["sum_x"], _COL["sum_abs_x"]),
         ("sum of 1/sigma", _COL["sum_w"], _COL["sum_w"]))


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
    """The checks of :class:`PartitionLedger` on lazy data computed into memory (STANDARD):
    the same summary, of the data as one partition."""
    from ..solver.stats import block_summary

    n = int(np.shape(y)[0])
    PartitionLedger((n,), n_params).check(np.asarray(block_summary(xs, y, w, n)))


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
    require_finite : bool
        Refuse points with NaN or inf in x, y or σ (``check_finite=True``) instead of
        leaving them out.
    """

    def __init__(self, chunks, n_params: int, source: str = "", require_finite: bool = False):
        self.starts = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
        self.n_params = int(n_params)
        self.source = source
        self.first: np.ndarray | None = None
        self.seen = np.zeros(len(chunks), dtype=bool)
        self.counted = False
        self.origin: str | None = None
        self.require_finite = require_finite

    def seed(self, first: np.ndarray, origin: str) -> None:
        """Start from the summaries of an earlier run (``(n_partitions, k)``), e.g. those
        stored in the checkpoint named by ``origin``, already checked when recorded."""
        first = np.asarray(first, dtype=np.float64)
        if first.shape != (len(self.seen), len(SUMMARY_FIELDS)):
            raise ValueError(f"{origin}: stored data summaries have shape {first.shape}, "
                             f"expected {(len(self.seen), len(SUMMARY_FIELDS))}")
        self.first, self.origin = first.copy(), origin
        self.seen[:] = True
        self.counted = True

    def _where(self, i: int) -> str:
        src = f" of {self.source}" if self.source else ""
        return f"partition {i} (points {self.starts[i]:,}-{self.starts[i + 1] - 1:,}){src}"

    def check(self, summary: np.ndarray, parts=None) -> None:
        """Check one pass's summaries, ``(len(parts), k)`` rows for ``parts`` (default all)."""
        summary = np.asarray(summary, dtype=np.float64).reshape(-1, len(SUMMARY_FIELDS))
        parts = np.arange(len(self.seen)) if parts is None else np.asarray(parts, dtype=np.int64)
        if self.first is None:
            self.first = np.zeros((len(self.seen), summary.shape[1]))
        bad = np.flatnonzero(summary[:, _BAD_SIGMA] > 0)
        if bad.size:
            i = int(parts[bad[0]])
            total = int(summary[:, _BAD_SIGMA].sum())
            src = f", the first in {self._where(i)}" if len(self.seen) > 1 or self.source else ""
            raise ValueError(f"sigma must be positive everywhere: {total:,} point(s) have "
                             f"sigma <= 0{src}. Give every point a positive uncertainty, or NaN "
                             "to leave the point out")
        if self.require_finite:
            lengths = self.starts[parts + 1] - self.starts[parts]
            short = np.flatnonzero(summary[:, _POINTS] < lengths)
            if short.size:
                i = int(parts[short[0]])
                n_bad = int((lengths - summary[:, _POINTS]).sum())
                raise ValueError(f"the data contain NaN or inf ({n_bad:,} point(s) in this "
                                 f"pass, the first in {self._where(i)}); check_finite=True "
                                 "refuses them: clean the data, or pass check_finite=False "
                                 "(or nan_policy='omit') to leave those points out")
        old = self.seen[parts]
        changed = _changes(self.first[parts], summary) & old[:, None]
        if changed.any():   # one vectorised test per pass; a message for the first partition
            j = int(np.argmax(changed.any(axis=1)))
            self._raise_changed(int(parts[j]), self.first[parts[j]], summary[j], changed[j])
        new = ~old
        self.first[parts[new]] = summary[new]
        self.seen[parts[new]] = True
        if not self.counted and self.seen.all():
            self.counted = True
            src = f" in {self.source}" if self.source else ""
            require_points(int(self.first[:, _POINTS].sum()), self.n_params, src)

    def _raise_changed(self, i: int, before: np.ndarray, now: np.ndarray, which) -> None:
        changes = [f"usable points {int(before[_POINTS]):,} -> {int(now[_POINTS]):,}"] \
            if which[0] else []
        changes += [f"{name} {before[s]:.17g} -> {now[s]:.17g}"
                    for (name, s, _), hit in zip(_SUMS, which[1:]) if hit]
        if self.origin is not None:
            raise DataChangedError(
                f"the data of {self._where(i)} differ from the data {self.origin} was "
                f"written for ({'; '.join(changes)}): resuming would mix two datasets. "
                "Fit the original data, or start over with checkpoint_fresh=True")
        raise DataChangedError(
            f"the data of {self._where(i)} changed between passes of this fit "
            f"({'; '.join(changes)}): its source was rewritten, lost a chunk or returns "
            "different values on each read. A fit over changing data has no meaning: "
            "restore the data (or finish writing it) and fit again")


def _changes(before: np.ndarray, now: np.ndarray) -> np.ndarray:
    """``(rows, 1 + len(_SUMS))`` bool: the usable-point count differs (exactly), and each
    sum or its absolute sum differs beyond :data:`SUM_RTOL` of the absolute sum."""
    cols = [now[:, _POINTS] != before[:, _POINTS]]
    for _, s, a in _SUMS:
        tol = SUM_RTOL * np.maximum(np.abs(before[:, a]), np.finfo(float).tiny)
        cols.append((np.abs(now[:, s] - before[:, s]) > tol)
                    | (np.abs(now[:, a] - before[:, a]) > tol))
    return np.stack(cols, axis=1)
