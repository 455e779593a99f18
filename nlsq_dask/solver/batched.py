"""Batched Levenberg–Marquardt: many small independent fits at once (per-pixel fits).

Every pixel is its own problem ``min ½ Σ_i ρ(r_i²)``, ``r_i = (f(x_i, p) - y_i)·w_i``
with ``p`` of a few parameters and ``N`` of tens to thousands of points. A tile of
pixels runs in one ``lax.while_loop``. Data are pixel-major (``y`` is ``(B, N)``, the
layout of an xarray block whose fit dimensions are last, so a tile is a contiguous
slice); parameters and per-pixel statistics have the pixels last (``(p, B)``), so the
solver's algebra is elementwise over contiguous pixels. The point statistics are one
fused reduction along the point axis. Unfinished pixels are regrouped into fresh
tiles between rounds (:func:`batched_fit`), so slow pixels do not keep whole tiles
iterating.

Method (why not :mod:`~nlsq_dask.solver.lm`): the trust-region solver there
eigen-decomposes ``JᵀJ`` each step; batched LAPACK ``eigh`` of tiny matrices on a CPU
is slow. Here each iteration solves the damped normal equations

    (H + λ·diag(D)) δ = -g,        H = J̃ᵀJ̃,  g = J̃ᵀr̃  (loss-rescaled as scipy)

with a Cholesky factorisation unrolled in Python over the static ``p`` at trace time
(pure elementwise ops on ``(B,)`` vectors). ``D`` is the running maximum of
``diag(H)`` (Marquardt/MINPACK scaling, scipy's ``x_scale='jac'``). The damping
follows Marquardt: ``λ ← λ/10`` after a step whose actual/predicted reduction ``ρ``
exceeds ¾, ``λ ← 2λ`` when ``ρ < ¼``, ``λ ← 10λ`` after a rejected step (on the
exponential benchmark this took fewer evaluations than Nielsen's rule).
Bounds (projected Newton): parameters sitting on a bound with the gradient pushing
outwards are held fixed for the step, the others solve the reduced system, the trial
point is projected onto ``[lb, ub]`` and the predicted reduction is that of the
projected step; so interior optima are scipy's, and bounded ones KKT points; for the
gradient test the gradient is scaled by Coleman–Li's ``v`` as in scipy's ``trf``
(a parameter held at a bound by its gradient does not block ``gtol``).

Termination has scipy's meanings and status codes: 1 ``gtol`` (``‖g·v‖∞ < gtol``),
2 ``ftol`` (``dF < ftol·F`` and ``ρ > ¼``), 3 ``xtol`` (``‖δ‖ < xtol(xtol + ‖x‖)``),
4 both, 0 ``max_nfev`` trial evaluations, -1 residuals not finite at ``p0`` or fewer
usable points than parameters (none included). Each trial is one evaluation of
residuals and Jacobian (forward mode, one ``jax.jvp`` per parameter basis vector); an
accepted trial's statistics are those of the new iterate.

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

from .compile_options import jit_vectorised
from .covariance import batched_covariance
from .model import ModelSpec
from .pixel_stats import clean_points, make_pixel_stats, point_model
from .trust_region import cl_scaling

_EPS = float(jnp.finfo(jnp.float64).eps)
_TINY = 1e-300
TILE = 2048
LAMBDA0 = 1e-2      # initial damping (relative to the Marquardt scaling D)
LAMBDA_DOWN = 0.1   # after a very successful step (ratio > 3/4)
LAMBDA_UP = 10.0    # after a rejected step


class BatchedResult(NamedTuple):
    """Results per pixel; the pixel axis is last."""

    popt: jnp.ndarray     # (p, B)
    pcov: jnp.ndarray     # (p, p, B)
    cost: jnp.ndarray     # (B,)  ½ Σ ρ at popt
    status: jnp.ndarray   # (B,)  scipy's codes, -1 not finite / no points
    nfev: jnp.ndarray     # (B,)  trial evaluations
    n: jnp.ndarray        # (B,)  points used


class _State(NamedTuple):
    x: jnp.ndarray
    cost: jnp.ndarray
    g: jnp.ndarray
    H: jnp.ndarray
    n: jnp.ndarray
    D: jnp.ndarray
    lam: jnp.ndarray
    nfev: jnp.ndarray
    status: jnp.ndarray
    done: jnp.ndarray


def _field_rows(p: int) -> dict:
    """``name -> (rows, per-pixel shape)`` of every :class:`_State` field and the bounds
    in the packed array, in packing order."""
    shapes = {"x": (p,), "cost": (), "g": (p,), "H": (p, p), "n": (), "D": (p,), "lam": (),
              "nfev": (), "status": (), "done": (), "lb": (p,), "ub": (p,)}
    rows, k = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        rows[name] = (slice(k, k + size), shape)
        k += size
    return rows


def _unpack(packed, p):
    """``(_State, lb, ub)`` from the packed ``(rows, B)`` float64 array (numpy or jax).

    The state of a tile travels as ONE array: moving it to and from the solver costs
    one transfer instead of twelve (~25 µs each), which decides the speed of small
    tiles and of the last rounds."""
    out = {}
    for name, (rows, shape) in _field_rows(p).items():
        block = packed[rows].reshape(shape + packed.shape[1:])
        out[name] = (block > 0.5 if name == "done" else
                     block.astype(np.int64) if name in ("nfev", "status") else block)
    lb, ub = out.pop("lb"), out.pop("ub")
    return _State(**out), lb, ub


def _pack(state: _State, lb, ub, xp=jnp):
    """Inverse of :func:`_unpack` (``xp``: the array module)."""
    fields = list(state) + [lb, ub]
    return xp.concatenate([xp.reshape(a, (-1, a.shape[-1])).astype(xp.float64) for a in fields])


def _chol_solve(A, b):
    """Solve ``A x = b`` for SPD ``A`` given as nested lists of ``(B,)`` arrays.

    Unrolled at trace time over the static size, so every operation is elementwise
    over the batch. Non-positive pivots are clamped (the step is then huge and is
    rejected, which raises the damping).
    """
    p = len(b)
    L = [[None] * p for _ in range(p)]
    for j in range(p):
        s = A[j][j] - sum((L[j][k] * L[j][k] for k in range(j)), 0.0)
        d = jnp.sqrt(jnp.maximum(s, _EPS * jnp.abs(A[j][j]) + _TINY))
        L[j][j] = d
        for i in range(j + 1, p):
            L[i][j] = (A[i][j] - sum((L[i][k] * L[j][k] for k in range(j)), 0.0)) / d
    z = []
    for i in range(p):
        z.append((b[i] - sum((L[i][k] * z[k] for k in range(i)), 0.0)) / L[i][i])
    x = [None] * p
    for i in reversed(range(p)):
        x[i] = (z[i] - sum((L[k][i] * x[k] for k in range(i + 1, p)), 0.0)) / L[i][i]
    return x


def _quad(H, v):
    """``vᵀ H v`` per pixel for ``H`` (p, p, B) and ``v`` (p, B)."""
    return jnp.sum(v[:, None, :] * H * v[None, :, :], axis=(0, 1))


def _tile_index(part, tile):
    """Index of one tile: a slice for a full run of consecutive pixels (no copy),
    else ``part`` padded to ``tile`` with its first pixel."""
    if part.size == tile and part[-1] - part[0] == tile - 1:
        return slice(int(part[0]), int(part[0]) + tile)
    return np.concatenate([part, np.full(tile - part.size, part[0])])


class _Options(NamedTuple):
    ftol: jnp.ndarray
    xtol: jnp.ndarray
    gtol: jnp.ndarray
    max_nfev: jnp.ndarray


@lru_cache(maxsize=64)
def _compiled(model: ModelSpec, x_shared: tuple, loss: tuple, n_points: int, tile: int):
    """The jitted ``advance`` for one tile shape ``(tile, n_points)``, cached under what
    ``model`` computes (:attr:`ModelSpec.identity`), not under its function object."""
    p = model.n_params
    stats = make_pixel_stats(point_model(model.func, model.x_form, p, x_shared, n_points, tile),
                             p, loss)

    def body(s: _State, data, lb, ub, opts: _Options) -> _State:
        # parameters held at a bound by their gradient stay fixed (projected Newton)
        held = ((s.x <= lb) & (s.g > 0)) | ((s.x >= ub) & (s.g < 0))
        free = [~held[i] for i in range(p)]
        A = [[jnp.where(free[i] & free[j], s.H[i, j] + (s.lam * s.D[i] if i == j else 0.0),
                        1.0 if i == j else 0.0) for j in range(p)] for i in range(p)]
        rhs = [jnp.where(free[i], -s.g[i], 0.0) for i in range(p)]
        xt = jnp.clip(s.x + jnp.stack(_chol_solve(A, rhs)), lb, ub)
        step = xt - s.x
        pred = -(jnp.sum(s.g * step, axis=0) + 0.5 * _quad(s.H, step))
        ct, gt, Ht, fin = stats(xt, data)
        actual = jnp.where(fin, s.cost - ct, -jnp.inf)
        ratio = jnp.where(pred > 0, actual / jnp.where(pred > 0, pred, 1.0), 0.0)
        accept = fin & (actual > 0)
        # scipy's check_termination
        step_norm = jnp.sqrt(jnp.sum(step * step, axis=0))
        x_norm = jnp.sqrt(jnp.sum(s.x * s.x, axis=0))
        f_ok = fin & (actual < opts.ftol * s.cost) & (ratio > 0.25)
        x_ok = step_norm < opts.xtol * (opts.xtol + x_norm)
        term = jnp.where(f_ok & x_ok, 4, jnp.where(f_ok, 2, jnp.where(x_ok, 3, 0)))
        # Marquardt's damping update
        lam = jnp.where(accept, jnp.where(ratio > 0.75, s.lam * LAMBDA_DOWN,
                                          jnp.where(ratio < 0.25, s.lam * 2.0, s.lam)),
                        s.lam * LAMBDA_UP)
        x = jnp.where(accept, xt, s.x)
        g = jnp.where(accept, gt, s.g)
        D = jnp.where(accept, jnp.maximum(s.D, jnp.diagonal(Ht, axis1=0, axis2=1).T), s.D)
        nfev = s.nfev + 1
        gtol_hit = jnp.max(jnp.abs(g * cl_scaling(x, g, lb, ub)[0]), axis=0) < opts.gtol
        status = jnp.where(term != 0, term, jnp.where(gtol_hit, 1, 0)).astype(jnp.int64)
        done = (term != 0) | gtol_hit | (nfev >= opts.max_nfev)
        new = _State(x, jnp.where(accept, ct, s.cost), g, jnp.where(accept, Ht, s.H), s.n, D,
                     lam, nfev, status, done)
        return _State(*[jnp.where(s.done, a, b) for a, b in zip(s, new)])

    def init(s: _State, data, lb, ub, opts: _Options) -> _State:
        n, x0 = s.n, jnp.clip(s.x, lb, ub)
        cost, g, H, finite = stats(x0, data)
        finite = finite & (n >= max(p, 1))     # fewer points than parameters: undetermined
        D = jnp.diagonal(H, axis1=0, axis2=1).T        # (p, B)
        D = jnp.where(D > 0, D, 1.0)
        gtol_hit = finite & (jnp.max(jnp.abs(g * cl_scaling(x0, g, lb, ub)[0]), axis=0) < opts.gtol)
        status = jnp.where(finite, jnp.where(gtol_hit, 1, 0), -1).astype(jnp.int64)
        return _State(x0, cost, g, H, n, D, jnp.full(tile, LAMBDA0), jnp.ones(tile, jnp.int64),
                      status, s.done | ~finite | gtol_hit | (opts.max_nfev <= 1))

    def advance(packed, xs, y, w, opts: _Options, stop_count, fresh):
        """(Start from the packed state's ``x`` if ``fresh``, then) iterate until at
        most ``stop_count`` pixels of the tile are still running; returns the packed
        state. One compiled function for both."""
        s, lb, ub = _unpack(packed, p)
        # cleaned once per call: the barrier keeps XLA from re-cleaning inside the loop
        data = jax.lax.optimization_barrier(clean_points(xs, y, w))
        s = s._replace(n=jnp.sum(data[3], axis=1).astype(s.n.dtype))
        s = jax.lax.cond(fresh, lambda s: init(s, data, lb, ub, opts), lambda s: s, s)
        s = jax.lax.while_loop(lambda s: jnp.sum(~s.done) > stop_count,
                               lambda s: body(s, data, lb, ub, opts), s)
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
        As in :func:`nlsq_dask.fit`, except that ``max_nfev`` defaults to ``100·p`` trials
        per pixel (scipy's default; a global fit allows ``1000·p`` passes).
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
    opts = _Options(f64(ftol), f64(xtol), f64(gtol),
                    np.int64(100 * n_params if max_nfev is None else max_nfev))
    p = int(n_params)
    packed = _pack(_State(x=p0, cost=np.zeros(B), g=np.zeros((p, B)), H=np.zeros((p, p, B)),
                          n=np.zeros(B), D=np.ones((p, B)), lam=np.full(B, LAMBDA0),
                          nfev=np.ones(B), status=np.zeros(B), done=np.zeros(B)),
                   lb, ub, xp=np)
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
