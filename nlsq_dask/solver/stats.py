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
import numpy as np

from .losses import scale_for_loss
from .model import ModelSpec

class NormalStats(NamedTuple):
    """Normal equations: points used ``n``, ``cost = ½Σρ``, ``g = J̃ᵀr̃`` and ``H = J̃ᵀJ̃``.

    The statistics types own what differs between the reductions: the empty sum
    (:meth:`empty`), adding a tile (:meth:`add`), combining partitions
    (:meth:`combine`), the normal form the LM reads (:meth:`normal_form`) and the
    factorisation of its trust-region subproblem (:meth:`trust_region_factor`).
    """

    n: jnp.ndarray
    cost: jnp.ndarray
    g: jnp.ndarray
    H: jnp.ndarray

    #: whether :meth:`normal_form`'s ``R11`` is a square root of ``H`` (else zeros)
    square_root = False

    @classmethod
    def empty(cls, n_params: int) -> "NormalStats":
        zero = jnp.zeros((), jnp.float64)
        return cls(zero, zero, jnp.zeros(n_params, jnp.float64),
                   jnp.zeros((n_params, n_params), jnp.float64))

    def add(self, n, cost, J, r) -> "NormalStats":
        """These statistics plus ``n`` points of cost ``cost``, Jacobian ``J`` (p, T) and
        residuals ``r`` (T,)."""
        return NormalStats(self.n + n, self.cost + cost, self.g + J @ r, self.H + J @ J.T)

    @staticmethod
    def combine(parts) -> tuple:
        """Sum of partition statistics given as tuples of numpy leaves, in order."""
        out = list(parts[0])
        for p in parts[1:]:
            out = [a + b for a, b in zip(out, p)]
        return tuple(out)

    def normal_form(self):
        """``(g, H, R11, q)``; ``R11`` and ``q`` are zeros."""
        p = self.g.shape[0]
        return self.g, self.H, jnp.zeros((p, p)), jnp.zeros(p)

    @staticmethod
    def trust_region_factor(g, H, R11, q, d, diag_h):
        """Singular values and vectors of the scaled augmented Jacobian, ``s·Uᵀf`` and
        ``Uᵀf/s``, from the eigen-decomposition of ``dHd + diag(diag_h)``."""
        Hh = d[:, None] * H * d[None, :] + jnp.diag(diag_h)
        w, V = jnp.linalg.eigh(Hh)
        w, V = w[::-1], V[:, ::-1]
        s = jnp.sqrt(jnp.maximum(w, 0.0))
        suf = V.T @ (d * g)
        return s, V, suf, suf / jnp.where(s > 0, s**2, 1.0)


class QRStats(NamedTuple):
    """TSQR: points used ``n``, ``cost = ½Σρ`` and ``R``, the ``(p+1) × (p+1)`` triangular
    factor of ``[J̃ | r̃]`` (the condition number of ``J``, not its square). Same
    interface as :class:`NormalStats`."""

    n: jnp.ndarray
    cost: jnp.ndarray
    R: jnp.ndarray

    square_root = True

    @classmethod
    def empty(cls, n_params: int) -> "QRStats":
        zero = jnp.zeros((), jnp.float64)
        return cls(zero, zero, jnp.zeros((n_params + 1, n_params + 1), jnp.float64))

    def add(self, n, cost, J, r) -> "QRStats":
        k = self.R.shape[0]
        A = jnp.concatenate([J.T, r[:, None]], axis=1)
        R = jnp.linalg.qr(jnp.concatenate([self.R, A], axis=0), mode="r")[:k]
        return QRStats(self.n + n, self.cost + cost, R)

    @staticmethod
    def combine(parts) -> tuple:
        R = np.concatenate([p[2] for p in parts], axis=-2)
        R = np.linalg.qr(R, mode="r")[..., : parts[0][2].shape[-1], :]
        return (sum(p[0] for p in parts), sum(p[1] for p in parts), R)

    def normal_form(self):
        """``(g, H, R11, q)`` with ``R = [[R11, q], [0, ·]]``: ``g = R11ᵀq``, ``H = R11ᵀR11``."""
        p = self.R.shape[0] - 1
        R11, q = self.R[:p, :p], self.R[:p, p]
        return R11.T @ q, R11.T @ R11, R11, q

    @staticmethod
    def trust_region_factor(g, H, R11, q, d, diag_h):
        """As :meth:`NormalStats.trust_region_factor`, from the SVD of
        ``[R11·d; diag(√diag_h)]``."""
        A = jnp.concatenate([R11 * d[None, :], jnp.diag(jnp.sqrt(diag_h))], axis=0)
        U, s, Vt = jnp.linalg.svd(A, full_matrices=False)
        uf = U.T @ jnp.concatenate([q, jnp.zeros(s.shape[0])])
        return s, Vt.T, s * uf, uf / jnp.where(s > 0, s, 1.0)


#: the statistics type of each ``reduction`` name
STATS_TYPES = {"normal": NormalStats, "qr": QRStats}
REDUCTIONS = tuple(STATS_TYPES)


def stats_type(reduction: str) -> type:
    """:class:`NormalStats` or :class:`QRStats` for a reduction name."""
    try:
        return STATS_TYPES[reduction]
    except KeyError:
        raise ValueError(f"reduction must be one of {list(STATS_TYPES)}; got {reduction!r}") \
            from None


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


def block_stats(spec: ModelSpec, loss: str, stats: type, tile: int,
                params, xs, y, w, n_valid, f_scale):
    """Statistics of one block of at least ``tile`` points, visited tile by tile.

    Parameters
    ----------
    spec, loss, stats, tile
        Static: the model, the loss, :class:`NormalStats` or :class:`QRStats`, points per
        tile.
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
        return carry.add(jnp.sum(ok, dtype=jnp.float64), 0.5 * jnp.sum(rho0), J, r)

    return jax.lax.fori_loop(0, n_tiles, body, stats.empty(p))


def whitened_stats(spec: ModelSpec, loss, stats: type, L, params, xs, y, f_scale):
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
    return stats.empty(p).add(jnp.asarray(y.shape[0], jnp.float64), 0.5 * jnp.sum(rho0), J, r)


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
