"""Statistics of a pass: additive sums over data points, computed per tile.

For parameters ``p`` a pass over (a partition of) the data returns

* ``NormalStats(n, cost, g, H)``: points used, ``cost = ½ Σ ρ``, ``g = J̃ᵀ r̃`` and
  ``H = J̃ᵀ J̃`` (``~``: rescaled for a robust loss as scipy does), or
* ``QRStats(n, cost, R)``: the ``(p+1) × (p+1)`` triangular factor of ``[J̃ | r̃]``
  (TSQR), which keeps the condition number of ``J`` instead of squaring it.

Both are sums over points, so partitions compute their part and the dask engine
adds them (stacking and re-factoring the ``R`` factors for TSQR). The kernel walks
the tiles that hold data in a ``lax.fori_loop`` and accumulates in the loop carry:
materialising the whole ``N × p`` Jacobian is several times slower (DESIGN.md §3).
Points at or beyond ``n_valid`` (padding) and points whose x, y or σ are not finite
add nothing and are not counted.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .losses import scale_for_loss
from .model import ModelSpec

REDUCTIONS = ("normal", "qr")


class NormalStats(NamedTuple):
    n: jnp.ndarray
    cost: jnp.ndarray
    g: jnp.ndarray
    H: jnp.ndarray


class QRStats(NamedTuple):
    n: jnp.ndarray
    cost: jnp.ndarray
    R: jnp.ndarray


def empty_stats(n_params: int, reduction: str):
    """Statistics of no points (the scan's initial carry)."""
    zero = jnp.zeros((), jnp.float64)
    if reduction == "qr":
        return QRStats(zero, zero, jnp.zeros((n_params + 1, n_params + 1), jnp.float64))
    return NormalStats(zero, zero, jnp.zeros(n_params, jnp.float64),
                       jnp.zeros((n_params, n_params), jnp.float64))


def residual_and_jacobian(spec: ModelSpec, params, xs, y, weigh):
    """``weigh(model(xs, params) - y)`` and its ``(p, N)`` Jacobian in the parameters: the
    user's ``jac`` weighed the same way, else forward-mode autodiff. ``weigh`` is linear
    and acts on the last (point) axis: weights ``1/σ``, or whitening by a covariance
    factor."""
    def residual(p):
        return weigh(spec.evaluate(xs, p) - y)

    if spec.jac is None:
        r, jvp = jax.linearize(residual, params)
        return r, jax.vmap(jvp)(jnp.eye(params.shape[0], dtype=params.dtype))
    return residual(params), weigh(spec.jacobian(xs, params))


def _tile_terms(spec: ModelSpec, loss: str, params, xs, y, w, ok, f_scale):
    """Masked, loss-rescaled residuals ``r`` (T,), Jacobian ``J`` (p, T), cost terms."""
    ok = ok & jnp.isfinite(y)
    if w is not None:
        ok = ok & jnp.isfinite(w)
    for xi in xs:
        ok = ok & jnp.isfinite(xi)

    r, J = residual_and_jacobian(spec, params, xs, y, (lambda a: a) if w is None else
                                 (lambda a: a * w))
    r = jnp.where(ok, r, 0.0)
    J = jnp.where(ok[None, :], J, 0.0)
    rho0, r, J = scale_for_loss(r, J, loss, f_scale)
    return ok, jnp.where(ok, rho0, 0.0), r, J


def block_stats(spec: ModelSpec, loss: str, reduction: str, tile: int,
                params, xs, y, w, n_valid, f_scale):
    """Statistics of one block of at least ``tile`` points, visited tile by tile.

    Parameters
    ----------
    spec, loss, reduction, tile
        Static: the model, the loss name, ``'normal'`` or ``'qr'``, points per tile.
    params : (p,) float64
    xs : tuple of (L,) arrays
        The independent variables.
    y : (L,) array
        Observations.
    w : (L,) array or None
        Weights ``1/σ``; None for unit weights (no array read at all).
    n_valid : int scalar
        Points ``[0, n_valid)`` are data, the rest padding (no mask array needed).
    f_scale : float
        The robust loss's soft margin.
    """
    length = y.shape[0]
    if length < tile:
        raise ValueError(f"block length {length} is shorter than the tile {tile}")
    p = params.shape[0]
    params = params.astype(jnp.float64)
    # only the tiles that hold data are visited: a block padded far beyond its points
    # (a bucket shared by many lengths) costs no more than its last tile
    n_tiles = jnp.minimum((n_valid + tile - 1) // tile, -(-length // tile))

    def body(i, carry):
        start = i * tile
        # the last tile of a length that is not a multiple of the tile ends at the end:
        # it re-reads points counted already, which the mask leaves out
        begin = jnp.minimum(start, length - tile)

        def cut(a):
            return jax.lax.dynamic_slice_in_dim(a.astype(jnp.float64), begin, tile)

        index = begin + jnp.arange(tile)
        valid = (index >= start) & (index < n_valid)
        ok, rho0, r, J = _tile_terms(spec, loss, params, tuple(cut(x) for x in xs), cut(y),
                                     None if w is None else cut(w), valid, f_scale)
        n = carry.n + jnp.sum(ok, dtype=jnp.float64)
        cost = carry.cost + 0.5 * jnp.sum(rho0)
        if reduction == "qr":
            A = jnp.concatenate([J.T, r[:, None]], axis=1)
            R = jnp.linalg.qr(jnp.concatenate([carry.R, A], axis=0), mode="r")[: p + 1]
            return QRStats(n, cost, R)
        return NormalStats(n, cost, carry.g + J @ r, carry.H + J @ J.T)

    return jax.lax.fori_loop(0, n_tiles, body, empty_stats(p, reduction))


def whitened_stats(spec: ModelSpec, loss, reduction: str, L, params, xs, y, f_scale):
    """Statistics of all the data at once for a full covariance ``C = L Lᵀ`` of ``y``:
    the residuals and Jacobian are whitened by ``L⁻¹`` (scipy's ``curve_fit`` with a 2-D
    ``sigma``). ``L`` couples every point with every other, so nothing is tiled: this
    runs on in-memory data only, with every point finite.
    """
    from jax.scipy.linalg import solve_triangular

    params = params.astype(jnp.float64)
    p = params.shape[0]

    def whiten(a):                       # L⁻¹ a for a (N,) vector or a (p, N) block
        return solve_triangular(L, a.T, lower=True).T

    r, J = residual_and_jacobian(spec, params, xs, y, whiten)
    rho0, r, J = scale_for_loss(r, J, loss, f_scale)
    n = jnp.asarray(y.shape[0], jnp.float64)
    cost = 0.5 * jnp.sum(rho0)
    if reduction == "qr":
        R = jnp.linalg.qr(jnp.concatenate([J.T, r[:, None]], axis=1), mode="r")[: p + 1]
        R = jnp.zeros((p + 1, p + 1)).at[: R.shape[0]].set(R)   # fewer points than p + 1
        return QRStats(n, cost, R)
    return NormalStats(n, cost, J @ r, J @ J.T)


SUMMARY_FIELDS = ("points", "sum_y", "sum_abs_y", "sum_x", "sum_abs_x", "sum_w",
                  "bad_sigma")


def block_summary(xs, y, w, n_valid):
    """What a block's data are, for checks that cost no extra read: ``(1, 7)`` float64.

    The usable points (finite x, y and σ), the sums of y, |y|, x, |x| (over all inputs)
    and of the weights ``1/σ`` over them, and the points whose σ is zero or negative
    (``w`` is ``+inf`` or negative). These depend on the data only, never on the
    parameters, so a partition gives the same summary on every pass unless its data
    changed (:data:`SUMMARY_FIELDS` names the columns).
    """
    length = y.shape[0]
    valid = jnp.arange(length) < n_valid
    y = y.astype(jnp.float64)
    ok = valid & jnp.isfinite(y)
    for x in xs:
        ok = ok & jnp.isfinite(x)
    if w is not None:
        w = w.astype(jnp.float64)
        bad_sigma = jnp.sum(valid & ((w < 0) | (w == jnp.inf)), dtype=jnp.float64)
        ok = ok & jnp.isfinite(w)
        sum_w = jnp.sum(jnp.where(ok, w, 0.0))
    else:
        bad_sigma = sum_w = jnp.zeros((), jnp.float64)
    xs = [jnp.where(ok, x.astype(jnp.float64), 0.0) for x in xs]
    y = jnp.where(ok, y, 0.0)
    return jnp.stack([jnp.sum(ok, dtype=jnp.float64), jnp.sum(y), jnp.sum(jnp.abs(y)),
                      sum(jnp.sum(x) for x in xs), sum(jnp.sum(jnp.abs(x)) for x in xs),
                      sum_w, bad_sigma])[None, :]


def normal_form(stats):
    """``(g, H, R11, q)`` of a statistics object; ``R11``/``q`` are zeros for ``normal``."""
    if isinstance(stats, QRStats):
        p = stats.R.shape[0] - 1
        R11, q = stats.R[:p, :p], stats.R[:p, p]
        return R11.T @ q, R11.T @ R11, R11, q
    p = stats.g.shape[0]
    return stats.g, stats.H, jnp.zeros((p, p)), jnp.zeros(p)
