"""Evenly spread subsets of a pass's units: tournament rounds and subset-first fits.

A dask fit from a start far from the optimum spends most of its passes getting close.
With many partitions, those passes need not read all the data: :func:`subset_start`
runs the LM on an evenly spread subset of the units, then on subsets four times as
large, each from the last one's answer, until the answer is *settled* — the last
growth moved the cost so little that finishing on the full data is predicted to meet
``ftol`` within its first step (levels after the first take one accepted step: from
the last answer it lands at the new subset's optimum) — or the next subset would be more than a quarter of the
data. The full-data LM then starts from there: the answer is the full-data optimum,
reached by the same termination tests as without subsets; only the start differs.

Settled, by the statistics of the fit itself: for a subset of ``n_k`` points the
optimum moves from the previous subset's (``n_{k-1}`` points) by sampling noise whose
cost reduction is ``ΔF/F ≈ p (1/n_{k-1} - 1/n_k)``; the move still ahead to the full
``N`` points is predicted as the measured one scaled by
``(1/n_k - 1/N) / (1/n_{k-1} - 1/n_k)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .hooks import Hook

#: evenly spread units in the first subset: enough for its points to span the data
FIRST_UNITS = 8
#: subsets are used only when the first is at most this share of the data
MAX_FIRST_FRACTION = 0.2
#: ... with at least this many points per parameter
MIN_POINTS_PER_PARAM = 1000
#: each subset has this many times the units of the one before
GROWTH = 4
#: no subset beyond this share of the data (the full data are then as cheap)
MAX_FRACTION = 0.25
#: settled when the predicted full-data reduction is below this share of ``ftol``
SETTLE = 0.5


def spread(n: int, m: int) -> list[int]:
    """``m`` of the indices ``0 … n-1`` spread evenly, both ends included."""
    return sorted(set(np.linspace(0, n - 1, max(1, min(m, n))).round().astype(int).tolist()))


def subset_levels(runner, n_params: int) -> list[list[int]]:
    """The units of each subset level (growing, each evenly spread), or ``[]`` where the
    data have too few partitions (or points) for a subset to save passes."""
    n = runner.n_units
    first = spread(n, FIRST_UNITS)
    points = runner.fraction(first) * float(np.sum(runner.chunks))
    if runner.fraction(first) > MAX_FIRST_FRACTION or points < MIN_POINTS_PER_PARAM * n_params:
        return []
    levels, m = [first], FIRST_UNITS * GROWTH
    while m < n and runner.fraction(spread(n, m)) <= MAX_FRACTION:
        levels.append(spread(n, m))
        m *= GROWTH
    return levels


class _LevelWatch(Hook):
    """A level's cost at its start (the new subset's cost at the last answer) and, on
    levels after the first, a stop once a step is accepted: from a start this close the
    first step lands at the subset's optimum, within its sampling error of the full
    data's; passes confirming the subset's own convergence would buy nothing."""

    def __init__(self, first_step_only: bool):
        self.cost, self.first_step_only, self.stopped = None, first_step_only, False

    def after_pass(self, state, head, seconds):
        if self.cost is None:
            self.cost = float(head.cost)
            return False
        self.stopped = self.first_step_only and bool(head.accepted) and not bool(head.done)
        return self.stopped


@dataclass
class SubsetReport:
    """What the subset levels of a fit did (``FitResult.extras['subsets']``)."""

    levels: list[dict] = field(default_factory=list)
    settled: bool = False

    @property
    def passes(self) -> int:
        return sum(lv["passes"] for lv in self.levels)

    @property
    def equivalent_passes(self) -> float:
        return float(sum(lv["passes"] * lv["fraction"] for lv in self.levels))

    def to_dict(self) -> dict:
        return dict(levels=self.levels, settled=self.settled, passes=self.passes,
                    equivalent_passes=self.equivalent_passes)


def subset_start(runner, x0, opts, progress=None):
    """``(start for the full-data fit, SubsetReport or None)``.

    ``x0`` itself (and None) when the data have too few partitions for subsets; the
    last good level's answer otherwise. A level that fails (not finite, or stopped
    without converging) ends the subsets at the answer before it.
    """
    from .iterate import iterate
    from .progress import Progress

    progress = progress or Progress()

    levels = subset_levels(runner, int(np.size(x0)))
    if not levels:
        return x0, None
    report, x, before = SubsetReport(), np.asarray(x0, dtype=float), None
    ftol, total = float(opts.ftol), float(np.sum(runner.chunks))
    for units in levels:
        fraction = runner.fraction(units)
        first = _LevelWatch(first_step_only=before is not None)
        n_parts = int(len(runner.partitions_of(units)))
        hooks = [first, *progress.subset_hooks(int(fraction * total), n_parts, fraction,
                                               report.equivalent_passes)]
        state, passes = iterate(runner, x, opts, hooks, parts=units)
        n_k = fraction * total
        report.levels.append(dict(partitions=n_parts,
                                  fraction=fraction, points=int(n_k), passes=int(passes),
                                  cost_start=first.cost, cost=float(state.cost),
                                  status=int(state.status)))
        if not ((int(state.status) > 0 or first.stopped) and np.all(np.isfinite(state.x))
                and np.isfinite(float(state.cost))):
            break
        x = np.asarray(state.x, dtype=float)
        if before is not None and first.cost is not None and float(state.cost) > 0:
            moved = (first.cost - float(state.cost)) / float(state.cost)
            ahead = moved * (1 / n_k - 1 / total) / max(1 / before - 1 / n_k, 1e-300)
            report.levels[-1]["predicted_full_reduction"] = ahead
            if ahead <= SETTLE * ftol:
                report.settled = True
                break
        before = n_k
    return x, report
