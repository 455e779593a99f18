"""Several starts (multi-start, tournament) and validation restarts of a configured fit.

Multi-start never multiplies the I/O by the number of starts: in memory all starts
run together, one kernel call per pass (screened on a strided subsample when the data
are large); on dask one read of each partition serves every start (the kernel is
vmapped over starts), and a tournament lets the starts iterate on growing, evenly
spread subsets of partitions, dropping the worse half each round, before the winner is
finished with full-data passes. All of them iterate with
:func:`~nlsq_dask.engines.iterate.batch_passes`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..workflow import WorkflowTier
from .driver import FitContext
from .iterate import batch_passes
from .outputs import EngineOutput
from .subsets import spread

SCREEN_MIN_POINTS = 5_000
SCREEN_PASSES = 20
ROUND_PASSES = 5


class QualityWarning(UserWarning):
    """Validation restarts disagree with the optimum beyond its standard errors."""


def _pick(state, i):
    """The ``i``-th start of a batched state."""
    return type(state)(*[np.asarray(leaf)[i] for leaf in state])


def _best(state) -> int:
    cost = np.where((np.asarray(state.status) >= 0) & np.isfinite(state.cost), state.cost, np.inf)
    return int(np.argmin(cost))


def _start_records(starts, state) -> list[dict]:
    return [dict(index=i, initial=np.asarray(starts[i]).tolist(), final=np.asarray(state.x[i]).tolist(),
                 cost=float(state.cost[i]), status=int(state.status[i]), nfev=int(state.nfev[i]))
            for i in range(len(starts))]


def tournament(runner, starts, opts, round_passes: int = ROUND_PASSES):
    """Starts iterate on growing subsets of partitions; the worse half drops each round.

    Returns ``(winner index, final points, per-start records, rounds, pass equivalents)``.
    """
    n, S = runner.n_units, len(starts)
    n_rounds = max(1, math.ceil(math.log2(S)))
    x = np.array(starts, dtype=float)
    alive = np.arange(S)
    records = [dict(index=i, initial=x[i].tolist(), eliminated_in_round=None) for i in range(S)]
    rounds, equiv = [], 0.0
    for r in range(n_rounds):
        m = max(1, round(n * 2.0 ** (r - n_rounds) / 2))  # 1/2^(R+1) ... 1/4 of the data
        parts = spread(n, m)
        state, passes = batch_passes(runner, x[alive], opts, parts, round_passes)
        x[alive] = state.x
        cost = np.where(np.isfinite(state.cost), state.cost, np.inf)
        for j, i in enumerate(alive):
            records[i].update(final=x[i].tolist(), subset_cost=float(cost[j]),
                              status=int(state.status[j]),
                              subset_partitions=len(runner.partitions_of(parts)))
        order = np.argsort(cost, kind="stable")
        keep = alive[order[: max(1, math.ceil(len(alive) / 2))]]
        for i in set(alive.tolist()) - set(keep.tolist()):
            records[i]["eliminated_in_round"] = r
        alive = keep
        equiv += passes * runner.fraction(parts)
        rounds.append(dict(round=r, partitions=len(runner.partitions_of(parts)), starts=int(len(order)),
                           survivors=int(len(alive)), passes=int(passes)))
        if len(alive) == 1:
            break
    return int(alive[0]), x, records, rounds, equiv


def _finish(records: list, best: int, out: EngineOutput) -> None:
    """Record the winner's full-data result after it was finished."""
    records[best].update(final=np.asarray(out.state.x).tolist(), cost=float(out.state.cost),
                         status=int(out.state.status))


def _starts_in_memory(ctx: FitContext, starts):
    """All starts as one vmapped loop, screened on a strided subsample when the data are large."""
    xs, y, w = ctx.data()
    n = y.shape[0]
    n_screen = max(n // len(starts), SCREEN_MIN_POINTS)
    if n <= 2 * n_screen or ctx.inputs.cov_factor is not None:  # correlated points: all of them
        batch = ctx.run_in_memory(starts)
        best = _best(batch.state)
        out = EngineOutput(_pick(batch.state, best), batch.history[best], batch.elapsed)
        return out, dict(method="vmapped", starts=_start_records(starts, batch.state), winner=best,
                         data_passes=float(np.max(batch.state.nfev)),
                         passes=int(np.max(batch.state.nfev)))
    idx = np.linspace(0, n - 1, n_screen).round().astype(int)
    sub = (tuple(a[idx] for a in xs), y[idx], None if w is None else w[idx])
    opts = ctx.opts._replace(max_nfev=np.int64(min(SCREEN_PASSES, ctx.max_nfev)))
    batch = ctx.run_in_memory(starts, data=sub, opts=opts)
    best = _best(batch.state)
    records = _start_records(starts, batch.state)
    for r in records:  # costs of the subsample; the winner gets its full-data cost below
        r["subset_cost"] = r.pop("cost")
    out = ctx.run_in_memory(batch.state.x[best])
    _finish(records, best, out)
    passes = float(np.max(batch.state.nfev)) * n_screen / n + int(out.state.nfev)
    return out, dict(method=f"vmapped, screened on {n_screen:,} points", starts=records,
                     winner=best, data_passes=passes,
                     passes=int(np.max(batch.state.nfev)) + int(out.state.nfev))


def _starts_tournament(ctx: FitContext, starts):
    best, x, records, rounds, passes = tournament(ctx.runner(), starts, ctx.opts)
    out = ctx.run_dask(x[best], subsets=False)
    _finish(records, best, out)
    return out, dict(method="tournament", starts=records, winner=best, rounds=rounds,
                     data_passes=passes + int(out.state.nfev),
                     passes=sum(r["passes"] for r in rounds) + int(out.state.nfev))


def _starts_vmapped_passes(ctx: FitContext, starts):
    state, passes = batch_passes(ctx.runner(), starts, ctx.opts, patience=2)
    best = _best(state)
    records = _start_records(starts, state)
    out = EngineOutput(_pick(state, best), [], 0.0)
    if not bool(state.done[best]):  # stopped by patience while the best was still improving
        out = ctx.run_dask(state.x[best], subsets=False)
        passes += int(out.state.nfev)
        _finish(records, best, out)
    return out, dict(method="vmapped passes", starts=records, winner=best,
                     data_passes=float(passes), passes=int(passes))


def run_starts(ctx: FitContext, starts: np.ndarray):
    """Multi-start on the selected tier: ``(EngineOutput of the winner, report dict)``.

    ``report["data_passes"]`` counts reads of the data in full-pass equivalents,
    the winner's finishing passes included.
    """
    c = ctx.selection.config
    if ctx.in_memory:
        return _starts_in_memory(ctx, starts)
    if c.tournament or ctx.selection.tier in (WorkflowTier.STREAMING,
                                              WorkflowTier.STREAMING_CHECKPOINT):
        return _starts_tournament(ctx, starts)
    return _starts_vmapped_passes(ctx, starts)


def run_validation(ctx: FitContext, popt, perr, n_runs: int, seed: int = 1) -> dict:
    """Restart from perturbed copies of the optimum and report the spread (QUALITY)."""
    rng = np.random.default_rng(seed)
    scale = np.where(np.isfinite(perr) & (perr > 0), np.maximum(0.1 * np.abs(popt), 3 * perr), 0.1)
    starts = popt + scale * rng.uniform(-1, 1, size=(n_runs, popt.size))
    span = np.where(np.isfinite(ctx.ub - ctx.lb), ctx.ub - ctx.lb, 1.0)
    starts = np.clip(starts, ctx.lb + 1e-10 * span, ctx.ub - 1e-10 * span)
    if ctx.in_memory:
        state = ctx.run_in_memory(starts).state
    else:
        state, _ = batch_passes(ctx.runner(), starts, ctx.opts)
    found = np.asarray(state.x)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.max(np.abs(found - popt) / perr, axis=0)
    spread = found.std(axis=0)
    agree = bool(np.all(deviation <= 1.0))
    undetermined = [i for i in range(popt.size) if not perr[i] < abs(popt[i])]
    if not agree:
        warnings.warn("validation restarts reached parameters that differ from the optimum by more "
                      f"than one standard error (max deviation {np.nanmax(deviation):.3g} perr): "
                      "the problem may be ill-posed or have several minima", QualityWarning,
                      stacklevel=4)
    elif undetermined:
        warnings.warn(f"parameters {undetermined} have standard errors as large as their values: "
                      "the data barely determine them", QualityWarning, stacklevel=4)
    return dict(starts=starts.tolist(), params=found.tolist(), spread=spread.tolist(),
                max_deviation_in_perr=deviation.tolist(), agree=agree,
                poorly_determined=undetermined,
                costs=np.asarray(state.cost).tolist())
