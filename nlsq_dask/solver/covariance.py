"""Parameter covariance exactly as ``scipy.optimize.curve_fit`` computes it.

:func:`covariance` for one fit, :func:`batched_covariance` for many small fits at once
(per-pixel fits), with the same scaling and cut-off.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from .. import errors

_EPS = float(np.finfo(np.float64).eps)
# A parameter is undetermined when the discarded (null-space) directions of the scaled
# Jacobian carry more than this share of its unit vector: moving it along them changes
# no residual. Rounding leaves components of order sqrt(eps) on determined parameters.
NULL_SHARE = 1e-6


def covariance(H, R11=None, *, n_points: int, cost: float, absolute_sigma: bool,
               param_names=None) -> np.ndarray:
    """Moore–Penrose inverse of ``JᵀJ = H`` discarding zero singular values of ``J``
    (from the SVD of ``R11``, a square root of ``H``, when given: TSQR statistics).

    As ``curve_fit``, except that ``J`` is first scaled to unit column norms (the
    pseudo-inverse is then scaled back), which keeps the digits of ill-conditioned
    problems; the cut-off applies to the scaled singular values.

    Unless ``absolute_sigma``, it is scaled by ``2·cost / (n_points - p)`` (the
    reduced χ²). Where the covariance is undetermined (``n_points <= p``, a NaN, or no
    singular value above the cut-off) the result is filled with ``inf``; parameters that
    lie in the discarded null space (the model ignores them, they only enter through a
    combination that another parameter already fixes, or their Jacobian column is zero)
    get ``inf`` rows and columns. Either way a :class:`CovarianceWarning` (an
    ``OptimizeWarning``) names them. ``curve_fit`` fills the whole matrix with ``inf``
    in the first case and returns finite pseudo-inverse values in the second.
    """
    H = np.asarray(H, dtype=np.float64)
    p = H.shape[0]
    # Jacobi scaling first: JᵀJ squares cond(J), and without equilibration its small
    # eigenvalues drown in rounding on ill-conditioned problems (Hahn1, Nelson).
    d = np.sqrt(np.clip(np.diag(H), 0.0, None))
    d = np.where(d > 0, d, 1.0)
    if R11 is not None:
        _, s, Vt = np.linalg.svd(np.asarray(R11, dtype=np.float64) / d[None, :])
        V = Vt.T
    else:
        w, V = np.linalg.eigh(H / np.outer(d, d))
        order = np.argsort(w)[::-1]
        w, V = w[order], V[:, order]
        s = np.sqrt(np.clip(w, 0.0, None))
    threshold = np.finfo(float).eps * max(n_points, p) * (s[0] if s.size else 0.0)
    keep = s > threshold
    pcov = (V[:, keep] / s[keep] ** 2) @ V[:, keep].T / np.outer(d, d)
    undetermined = bool(np.isnan(pcov).any()) or not keep.any()
    if not undetermined and not absolute_sigma:
        if n_points > p:
            pcov = pcov * (2.0 * cost / (n_points - p))
        else:
            undetermined = True
    if undetermined:
        pcov = np.full((p, p), np.inf)
        why = (f"{n_points} usable points for {p} parameters" if n_points <= p else
               "the Jacobian at the solution is zero or not finite: the model does not change "
               "with its parameters there, its output is piecewise constant, or the weights "
               "1/sigma underflow")
        warnings.warn(f"Covariance of the parameters could not be estimated ({why}); pcov is "
                      "inf", errors.CovarianceWarning, stacklevel=3)
        return pcov
    free = null_space_parameters(V[:, ~keep])
    if free.any():
        pcov[free, :] = np.inf
        pcov[:, free] = np.inf
        names = param_names or [f"p{i}" for i in range(p)]
        warnings.warn("Covariance of the parameters could not be estimated for "
                      f"{[names[i] for i in np.flatnonzero(free)]}: the data do not determine "
                      "them (the model's value does not change with them, or only through a "
                      "combination of parameters); their pcov rows and columns are inf",
                      errors.CovarianceWarning, stacklevel=3)
    return pcov


def null_space_parameters(V_null, xp=np):
    """Which parameters have a share above :data:`NULL_SHARE` in the null-space basis
    ``V_null`` (p, k) (``xp``: the array module; batched bases have the pixels last)."""
    return xp.sum(V_null * V_null, axis=1) > NULL_SHARE


def jacobi_eigh(H, sweeps: int):
    """Eigenvalues ``(p, B)`` and eigenvectors ``(p, p, B)`` of symmetric ``H`` (p, p, B).

    Cyclic Jacobi rotations, unrolled over the static ``p`` and elementwise over the
    pixels (a batched LAPACK ``eigh`` of tiny matrices costs ~1.5 µs a pixel on a CPU,
    more than the whole fit). Jacobi converges quadratically: for the few parameters of
    a per-pixel model, four to six sweeps reach rounding level (see
    :func:`batched_covariance` for the count used).
    """
    p = H.shape[0]

    def sweep(_, carry):
        A, V = carry
        A = [[A[i, j] for j in range(p)] for i in range(p)]
        V = [[V[i, j] for j in range(p)] for i in range(p)]
        for i in range(p - 1):
            for j in range(i + 1, p):
                apq = A[i][j]
                zero = apq == 0.0
                theta = (A[j][j] - A[i][i]) / (2.0 * jnp.where(zero, 1.0, apq))
                t = jnp.where(zero, 0.0, jnp.where(theta >= 0, 1.0, -1.0)
                              / (jnp.abs(theta) + jnp.hypot(theta, 1.0)))
                c = 1.0 / jnp.sqrt(t * t + 1.0)
                sn = t * c
                A[i][i], A[j][j] = A[i][i] - t * apq, A[j][j] + t * apq
                A[i][j] = A[j][i] = jnp.zeros_like(apq)
                for k in range(p):
                    if k not in (i, j):
                        g, h = A[k][i], A[k][j]
                        A[k][i] = A[i][k] = c * g - sn * h
                        A[k][j] = A[j][k] = sn * g + c * h
                    g, h = V[k][i], V[k][j]
                    V[k][i], V[k][j] = c * g - sn * h, sn * g + c * h
        return jnp.stack([jnp.stack(r) for r in A]), jnp.stack([jnp.stack(r) for r in V])

    eye = jnp.broadcast_to(jnp.eye(p, dtype=H.dtype)[:, :, None], H.shape)
    A, V = jax.lax.fori_loop(0, sweeps, sweep, (H, eye))
    return jnp.diagonal(A, axis1=0, axis2=1).T, V


@lru_cache(maxsize=16)
def _batched_kernel(p: int, size: int, absolute_sigma: bool):
    """The jitted :func:`batched_covariance` kernel for ``size`` pixels of ``p`` parameters."""

    def covariance(H, n, cost):
        # Jacobi (unit-diagonal) scaling first, as the global fits' covariance does
        d = jnp.sqrt(jnp.maximum(jnp.diagonal(H, axis1=0, axis2=1).T, 0.0))   # (p, B)
        d = jnp.where(d > 0, d, 1.0)
        lam, V = jacobi_eigh(H / (d[:, None] * d[None, :]),
                             sweeps=3 + (p + 1) // 2)       # one sweep more than needed
        s = jnp.sqrt(jnp.maximum(lam, 0.0))
        keep = s > _EPS * jnp.maximum(n, p) * jnp.max(s, axis=0)
        inv = jnp.where(keep, 1.0 / jnp.where(keep, s * s, 1.0), 0.0)
        pcov = jnp.einsum("ikb,kb,jkb->ijb", V, inv, V) / (d[:, None] * d[None, :])
        bad = jnp.any(jnp.isnan(pcov), axis=(0, 1)) | ~jnp.all(jnp.isfinite(H), axis=(0, 1))
        bad |= ~jnp.any(keep, axis=0)
        if not absolute_sigma:
            dof = n - p
            pcov = pcov * 2.0 * cost / jnp.where(dof > 0, dof, 1.0)
            bad |= dof <= 0
        free = null_space_parameters(jnp.where(keep[None, :, :], 0.0, V), xp=jnp)   # (p, B)
        pcov = jnp.where(free[:, None, :] | free[None, :, :], jnp.inf, pcov)
        return jnp.where(bad, jnp.inf, pcov)

    return jax.jit(covariance)


def batched_covariance(H, n, cost, absolute_sigma: bool, chunk: int) -> np.ndarray:
    """``curve_fit``'s covariance per pixel from ``H`` (p, p, B).

    Moore–Penrose inverse of ``JᵀJ`` (singular values of ``J`` below
    ``eps·max(n, p)·s_max`` discarded), scaled by the reduced χ² unless
    ``absolute_sigma``; ``inf`` where undetermined. As in :func:`covariance`, ``J`` is
    scaled to unit column norms first and the cut-off applies to the scaled singular
    values; parameters in the discarded null space get ``inf`` rows and columns (see
    :func:`covariance`). Runs ``chunk`` pixels a call (one compile).
    """
    p, B = H.shape[0], H.shape[-1]
    kernel = _batched_kernel(p, chunk, bool(absolute_sigma))
    out = np.empty_like(H)
    for k in range(0, B, chunk):
        m = min(chunk, B - k)
        idx = np.minimum(np.arange(k, k + chunk), k + m - 1)   # padded with the last pixel
        out[..., k:k + m] = np.asarray(kernel(H[..., idx], n[idx], cost[idx]))[..., :m]
    return out
