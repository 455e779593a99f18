"""Parameter covariance exactly as ``scipy.optimize.curve_fit`` computes it."""

from __future__ import annotations

import warnings

import numpy as np


class CovarianceWarning(UserWarning):
    """The covariance of the parameters could not be estimated."""


def covariance(H, R11, *, n_points: int, cost: float, absolute_sigma: bool,
               reduction: str = "normal") -> np.ndarray:
    """Moore–Penrose inverse of ``JᵀJ`` discarding zero singular values of ``J``.

    As ``curve_fit``, except that ``J`` is first scaled to unit column norms (the
    pseudo-inverse is then scaled back), which keeps the digits of ill-conditioned
    problems; the cut-off applies to the scaled singular values.

    Unless ``absolute_sigma``, it is scaled by ``2·cost / (n_points - p)`` (the
    reduced χ²). Where the covariance is undetermined (``n_points <= p`` or a NaN),
    the result is filled with ``inf`` and a :class:`CovarianceWarning` is issued.
    """
    H = np.asarray(H, dtype=np.float64)
    p = H.shape[0]
    # Jacobi scaling first: JᵀJ squares cond(J), and without equilibration its small
    # eigenvalues drown in rounding on ill-conditioned problems (Hahn1, Nelson).
    d = np.sqrt(np.clip(np.diag(H), 0.0, None))
    d = np.where(d > 0, d, 1.0)
    if reduction == "qr":
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
    undetermined = bool(np.isnan(pcov).any())
    if not undetermined and not absolute_sigma:
        if n_points > p:
            pcov = pcov * (2.0 * cost / (n_points - p))
        else:
            undetermined = True
    if undetermined:
        pcov = np.full((p, p), np.inf)
        warnings.warn("Covariance of the parameters could not be estimated",
                      CovarianceWarning, stacklevel=3)
    return pcov
