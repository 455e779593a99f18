"""STANDARD tier: data on one device, the whole LM loop jitted.

The loop runs inside ``lax.while_loop`` — no host round trip per iteration — and
records the accepted iterates in fixed-size buffers. The jitted solve is keyed on
the model, loss, reduction, tile and history length (static) and on array shapes,
so a second fit of the same model with data of the same padded length reuses the
compiled code.
"""

from __future__ import annotations

import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..solver import LMOptions, ModelSpec, block_stats, lm_init, lm_step
from ..solver.stats import whitened_stats
from .outputs import EngineOutput
from .partitions import tile_for



class History(NamedTuple):
    cost: jnp.ndarray
    params: jnp.ndarray
    nfev: jnp.ndarray


def pad_to(a: np.ndarray, length: int, value=0.0) -> np.ndarray:
    if a.shape[-1] == length:
        return a
    pad = [(0, 0)] * (a.ndim - 1) + [(0, length - a.shape[-1])]
    return np.pad(a, pad, constant_values=value)


STATIC = ("spec", "loss", "reduction", "tile", "max_history")


def _solve_impl(spec: ModelSpec, loss: str, reduction: str, tile: int, max_history: int,
                x0, xs, y, w, n_valid, f_scale, opts: LMOptions, L=None):
    def stats_at(p):
        if L is not None:     # a full covariance: whitened, all points at once
            return whitened_stats(spec, loss, reduction, L, p, xs, y, f_scale)
        return block_stats(spec, loss, reduction, tile, p, xs, y, w, n_valid, f_scale)

    state = lm_init(x0, stats_at(x0), opts, reduction)
    hist = History(jnp.full(max_history, jnp.nan).at[0].set(state.cost),
                   jnp.full((max_history, x0.shape[0]), jnp.nan).at[0].set(state.x),
                   jnp.zeros(max_history, jnp.int64).at[0].set(1))

    def body(carry):
        state, hist = carry
        state = lm_step(state, stats_at(state.x_trial), opts, reduction)
        i = jnp.where(state.accepted, state.nit, max_history)  # out of range: dropped
        hist = History(hist.cost.at[i].set(state.cost, mode="drop"),
                       hist.params.at[i].set(state.x, mode="drop"),
                       hist.nfev.at[i].set(state.nfev, mode="drop"))
        return state, hist

    return jax.lax.while_loop(lambda c: ~c[0].done, body, (state, hist))


_solve = jax.jit(_solve_impl, static_argnames=STATIC)


@partial(jax.jit, static_argnames=STATIC)
def _solve_batch(spec, loss, reduction, tile, max_history, x0s, xs, y, w, n_valid, f_scale, opts,
                 L=None):
    """All starts as one vmapped loop: it runs until every start has finished."""
    def one(x0):
        return _solve_impl(spec, loss, reduction, tile, max_history, x0, xs, y, w, n_valid,
                           f_scale, opts, L)
    return jax.vmap(one)(x0s)


def run_in_memory(spec: ModelSpec, *, x0, data, loss: str, f_scale: float,
                  reduction: str, opts: LMOptions, max_nfev: int, cov_factor=None) -> EngineOutput:
    """Fit materialised data ``(xs, y, w)`` (see :func:`materialise`) on one device.

    ``x0`` of shape ``(S, p)`` runs ``S`` starts as one vmapped batch; the state then
    has a leading axis of starts and the history is that of each start. Non-finite
    points left in the data (only possible for lazy inputs) are skipped by the kernel.
    ``cov_factor`` (the Cholesky factor of a full covariance of ``y``) whitens the
    residuals instead of weights ``w``.
    """
    xs, y, w = data
    n = y.shape[0]
    tile = tile_for(n)
    length = -(-n // tile) * tile if cov_factor is None else n     # no padding when whitened
    xs_p = tuple(pad_to(np.asarray(x, np.float64), length) for x in xs)
    w = None if w is None else pad_to(np.asarray(w, np.float64), length, 1.0)
    args = (pad_to(np.asarray(y, np.float64), length), w, np.int64(n))
    x0 = np.asarray(x0, np.float64)
    solve = _solve_batch if x0.ndim == 2 else _solve
    t0 = time.perf_counter()
    state, hist = solve(spec, loss, reduction, tile, int(max_nfev) + 1, x0, xs_p, *args,
                        np.float64(f_scale), opts,
                        None if cov_factor is None else np.asarray(cov_factor, np.float64))
    state = jax.tree_util.tree_map(np.asarray, state)
    elapsed = time.perf_counter() - t0
    if x0.ndim == 2:
        history = [history_from_buffers(History(*[h[i] for h in hist]), int(state.nit[i]),
                                        int(state.nfev[i]), elapsed) for i in range(x0.shape[0])]
    else:
        history = history_from_buffers(hist, int(state.nit), int(state.nfev), elapsed)
    return EngineOutput(state, history, elapsed)


def materialise(inputs):
    """``(xs, y, w)`` as numpy arrays (``w`` None without σ), computing dask inputs in one go."""
    arrays = [*inputs.xs, inputs.y] + ([inputs.sigma] if inputs.sigma is not None else [])
    if inputs.lazy:
        import dask

        arrays = list(dask.compute(*arrays))
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    k = inputs.n_inputs
    xs, y = tuple(arrays[:k]), arrays[k]
    with np.errstate(divide="ignore"):  # sigma = 0 gives w = inf, refused by the checks
        w = 1.0 / arrays[k + 1] if inputs.sigma is not None else None
    return xs, y, w


def history_from_buffers(hist: History, nit: int, nfev_total: int, elapsed: float) -> list:
    """Per accepted iteration; ``elapsed`` is apportioned by passes (the loop ran on device)."""
    cost, params, nfev = (np.asarray(a) for a in hist)
    per_pass = elapsed / max(nfev_total, 1)
    return [dict(iteration=i, cost=float(cost[i]), params=params[i].tolist(), nfev=int(nfev[i]),
                 elapsed=float(nfev[i]) * per_pass, elapsed_estimated=True)
            for i in range(nit + 1)]
