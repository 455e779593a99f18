"""Many small independent fits at once (per-pixel fits), by scipy's ``trf``.

Every pixel is its own problem ``min ½ Σ_i ρ(r_i²)``, ``r_i = (f(x_i, p) - y_i)·w_i``
with ``p`` of a few parameters and ``N`` of tens to thousands of points. A tile of
pixels runs in one ``lax.while_loop``. Data are pixel-major (``y`` is ``(B, N)``, the
layout of an xarray block whose fit dimensions are last, so a tile is a contiguous
slice); parameters and per-pixel statistics have the pixels last (``(p, B)``), so the
solver's algebra is elementwise over contiguous pixels. The point statistics are one
fused reduction along the point axis. Unfinished pixels are regrouped into fresh
tiles between rounds (:func:`batched_fit`), so slow pixels do not keep whole tiles
iterating.

Method: the trust-region reflective iteration of the global fits
(:mod:`~nlsq_dask.solver.lm`, ``scipy.optimize.least_squares(method='trf',
x_scale='jac')`` with the exact trust-region solver), vectorised over the pixels by
:mod:`~nlsq_dask.solver.batched_trf`: Coleman–Li scaling, Moré's search for the
Levenberg–Marquardt parameter, the reflected and bound-limited steps of
``select_step``, scipy's radius update and termination. So interior and bounded
optima are scipy's, and so are the evaluation counts: the start is one evaluation,
each trial one more (residuals and Jacobian together, forward mode, one ``jax.jvp``
per parameter); an accepted trial's statistics are those of the new iterate. Unlike
the global fits there is no Gauss–Newton polish after ``ftol``/``xtol`` (scipy has
none). The start is moved strictly inside the bounds as ``least_squares`` does.

Status codes are scipy's: 1 ``gtol``, 2 ``ftol``, 3 ``xtol``, 4 ``ftol`` and ``xtol``,
0 ``max_nfev`` evaluations reached, -1 residuals not finite at ``p0`` or fewer usable
points than parameters (none included).

The point statistics come from :mod:`~nlsq_dask.solver.pixel_stats`, compiled as
:mod:`~nlsq_dask.solver.compile_options` says; the covariance is ``curve_fit``'s,
from :func:`~nlsq_dask.solver.covariance.batched_covariance`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import batched_trf as trf
from .batched_trf import Options, State
from .compile_options import jit_vectorised
from .covariance import batched_covariance
from .model import ModelSpec
from .pixel_stats import clean_points, make_pixel_stats, point_model
from .trust_region import strictly_feasible_start

TILE = 1024      # pixels per tile: measured fastest on CPUs (lockstep waste vs per-call cost)


class BatchedResult(NamedTuple):
    """Results per pixel; the pixel axis is last."""

    popt: jnp.ndarray     # (p, B)
    pcov: jnp.ndarray     # (p, p, B)
    cost: jnp.ndarray     # (B,)  ½ Σ ρ at popt
    status: jnp.ndarray   # (B,)  scipy's codes, -1 not finite / no points
    nfev: jnp.ndarray     # (B,)  function evaluations (the start counts one)
    n: jnp.ndarray        # (B,)  points used


def _field_rows(p: int) -> dict:
    """``name -> (rows, per-pixel shape)`` of every :class:`~.batched_trf.State` field and
    the bounds in the packed array, in packing order."""
    shapes = {"x": (p,), "cost": (), "g": (p,), "H": (p, p), "n": (), "scale_inv": (p,),
              "Delta": (), "alpha": (), "nfev": (), "status": (), "done": (), "lb": (p,),
              "ub": (p,)}
    rows, k = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        rows[name] = (slice(k, k + size), shape)
        k += size
    return rows


def _unpack(packed, p):
    """``(State, lb, ub)`` from the packed ``(rows, B)`` float64 array (numpy or jax).

    The state of a tile travels as ONE array: moving it to and from the solver costs
    one transfer instead of twelve (~25 µs each), which decides the speed of small
    tiles and of the last rounds."""
    out = {}
    for name, (rows, shape) in _field_rows(p).items():
        block = packed[rows].reshape(shape + packed.shape[1:])
        out[name] = (block > 0.5 if name == "done" else
                     block.astype(np.int64) if name in ("nfev", "status") else block)
    lb, ub = out.pop("lb"), out.pop("ub")
    return State(**out), lb, ub


def _pack(state: State, lb, ub, xp=jnp):
    """Inverse of :func:`_unpack` (``xp``: the array module)."""
    fields = list(state) + [lb, ub]
    return xp.concatenate([xp.reshape(a, (-1, a.shape[-1])).astype(xp.float64) for a in fields])


def _tile_index(part, tile):
    """Index of one tile: a slice for a full run of consecutive pixels (no copy),
    else ``part`` padded to ``tile`` with its first pixel."""
    if part.size == tile and part[-1] - part[0] == tile - 1:
        return slice(int(part[0]), int(part[0]) + tile)
    return np.concatenate([part, np.full(tile - part.size, part[0])])


@lru_cache(maxsize=64)
def _compiled(model: ModelSpec, x_shared: tuple, loss: tuple, n_points: int, tile: int):
    """The jitted ``advance`` for one tile shape ``(tile, n_points)``, cached under what
    ``model`` computes (:attr:`ModelSpec.identity`), not under its function object."""
    p = model.n_params
    stats = make_pixel_stats(point_model(model.func, model.x_form, p, x_shared, n_points, tile),
                             p, loss)

    def advance(packed, xs, y, w, opts: Options, stop_count, fresh):
        """(Start from the packed state's ``x`` if ``fresh``, then) iterate until at
        most ``stop_count`` pixels of the tile are still running; returns the packed
        state. One compiled function for both."""
        s, lb, ub = _unpack(packed, p)
        # cleaned once per call: the barrier keeps XLA from re-cleaning inside the loop
        data = jax.lax.optimization_barrier(clean_points(xs, y, w))
        s = s._replace(n=jnp.sum(data[3], axis=1).astype(s.n.dtype))
        at = lambda P: stats(P, data)                                   # noqa: E731

        def begin(s):
            new = trf.start(s.x, s.n, *at(s.x), lb, ub, opts)
            return new._replace(done=new.done | s.done)      # padding pixels stay done

        s = jax.lax.cond(fresh, begin, lambda s: s, s)
        s = jax.lax.while_loop(lambda s: jnp.sum(~s.done) > stop_count,
                               lambda s: trf.iterate(s, at, lb, ub, opts), s)
        return _pack(s, lb, ub)

    return jit_vectorised(advance)


def batched_fit(func: Callable, n_params: int, xs, y, w, p0, lb, ub, *, x_form="vector",
                ftol=1e-8, xtol=1e-8, gtol=1e-8, max_nfev=None, loss="linear", f_scale=1.0,
                absolute_sigma=False, tile=TILE) -> BatchedResult:
    """Fit every row of ``y`` independently.

    Pixels run in tiles of ``tile`` (one compiled shape). Lockstep iteration would let
    the slowest pixel of a tile set the pace, so the tiles advance in rounds: a round
    stops once half of a tile is done, and the unfinished pixels of all
    tiles are gathered into fresh tiles for the next round (the last tile runs to the
    end). Pixels are independent, so the rounds do not change any result.

    Parameters
    ----------
    func : callable
        ``func(x, *params)`` written with ``jax.numpy``, pointwise in ``x`` (as for
        :func:`nlsq_dask.fit`); compiled solvers are cached under what it computes.
    n_params : int
    xs : tuple of arrays
        Each ``(N,)`` (shared by all pixels) or ``(B, N)`` (per pixel).
    y : (B, N) array
        Observations; NaN allowed (such points are skipped).
    w : (B, N) array or None
        Weights ``1/σ``; 0 drops a point (padding, masked). ``None``: all 1.
    p0, lb, ub : (p, B) arrays
        Start and bounds per pixel (``±inf`` for none).
    x_form : {'vector', 'stacked', 'tuple'}
        How ``x`` is handed to ``func`` (see :class:`~nlsq_dask.solver.ModelSpec`).
    ftol, xtol, gtol, max_nfev, loss, f_scale, absolute_sigma
        As in :func:`nlsq_dask.fit`, except that ``max_nfev`` counts function
        evaluations per pixel as ``least_squares`` does and defaults to ``100·p``
        (scipy's default; a global fit allows ``1000·p`` passes).
    tile : int
        Pixels per compiled ``while_loop``.
    """
    f64 = np.float64
    xs = tuple(np.asarray(x, f64) for x in xs)
    y, p0, lb, ub = (np.asarray(a, f64) for a in (y, p0, lb, ub))
    w = None if w is None else np.asarray(w, f64)
    B, N = y.shape
    pow2 = lambda k: 1 << (max(int(k), 1) - 1).bit_length()        # noqa: E731
    tile = int(min(tile, max(64, pow2(B))))                         # few shapes: few compiles
    model = ModelSpec(func, tuple(f"p{i}" for i in range(int(n_params))), x_form, len(xs))
    advance = _compiled(model, tuple(x.ndim == 1 for x in xs), (str(loss), float(f_scale)), N,
                        tile)
    opts = Options(f64(ftol), f64(xtol), f64(gtol),
                   np.int64(100 * n_params if max_nfev is None else max_nfev))
    p = int(n_params)
    x0 = strictly_feasible_start(np.clip(p0, lb, ub), lb, ub)     # as least_squares('trf')
    zero, zeros = np.zeros(B), np.zeros((p, B))
    packed = _pack(State(x=x0, cost=zero, g=zeros, H=np.zeros((p, p, B)), n=zero,
                         scale_inv=np.ones((p, B)), Delta=zero, alpha=zero, nfev=np.ones(B),
                         status=zero, done=zero), lb, ub, xp=np)
    done_row = _field_rows(p)["done"][0].start

    active, fresh = np.arange(B), True
    while active.size:
        stop = 0 if active.size <= tile else tile // 2
        runs = []
        for k in range(0, active.size, tile):     # dispatched asynchronously, then collected
            part = active[k:k + tile]
            idx = _tile_index(part, tile)
            st = packed[:, idx]
            if part.size < tile:
                st[done_row, part.size:] = 1.0         # padding: already done
            runs.append((part, advance(st, tuple(x if x.ndim == 1 else x[idx] for x in xs),
                                       y[idx], None if w is None else w[idx], opts, stop,
                                       fresh)))
        for part, out in runs:
            packed[:, part] = np.asarray(out)[:, :part.size]
        active, fresh = np.flatnonzero(packed[done_row] < 0.5), False
    state, _, _ = _unpack(packed, p)
    failed = state.status < 0
    pcov = batched_covariance(state.H, state.n, state.cost, absolute_sigma,
                              chunk=min(pow2(B), 16 * tile))   # few calls, few shapes
    return BatchedResult(np.where(failed, np.nan, state.x), np.where(failed, np.nan, pcov),
                         np.where(failed, np.nan, state.cost), state.status, state.nfev, state.n)
