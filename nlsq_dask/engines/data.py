"""Normalise the user's x, y and σ (numpy, dask or xarray) without computing anything.

The result is an :class:`Inputs` record: the independent variables as a tuple of 1-D
arrays, the observations, the uncertainties, and the facts the selector needs
(points, item size, partition sizes) read from shapes, dtypes and chunks only.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

NAN_POLICIES = ("raise", "omit")


@dataclass(frozen=True)
class Inputs:
    xs: tuple
    y: object
    sigma: object | None
    x_form: str
    n_points: int
    itemsize: int
    lazy: bool
    partition_points: int | None = None
    n_partitions: int = 1
    #: leading shape of an N-D ``x`` (its last axis is the point axis); () otherwise
    x_lead: tuple = ()
    #: lower Cholesky factor of a full covariance ``sigma`` (in-memory data only)
    cov_factor: np.ndarray | None = None
    #: lazy data: a non-finite point is an error (found in the first pass)
    require_finite: bool = False

    @property
    def n_inputs(self) -> int:
        return len(self.xs)


def _is_dask(a) -> bool:
    return type(a).__module__.startswith("dask.")


def _unwrap(a, name: str):
    """The array behind an xarray object; numpy for everything that is not dask."""
    if hasattr(a, "variable") and hasattr(a, "dims"):  # xarray.DataArray
        a = a.data
    if _is_dask(a):
        return a
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of numbers; got {type(a).__name__}") from exc
    return arr


def _check_numeric(a, name: str) -> None:
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")


def _nonfinite_count(a) -> int:
    return int(np.size(a) - np.count_nonzero(np.isfinite(a)))


def prepare_inputs(x, y, sigma=None, nan_policy: str = "raise",
                   require_finite: bool = False) -> Inputs:
    """Validate and normalise the data of a fit.

    Parameters
    ----------
    x : array_like of shape (N,), (k, N) or (..., N), or tuple of 1-D array_likes
        Independent variable(s); numpy, dask or xarray. The last axis is the point axis.
    y : 1-D array_like or scalar
        Observations (a scalar is the same value at every point, as scipy broadcasts).
    sigma : scalar, 1-D or 2-D array_like, optional
        Standard deviations of ``y``, or its covariance matrix (scipy's 2-D ``sigma``:
        diagonal ones become standard deviations; a full one needs in-memory data and is
        kept as its Cholesky factor).
    nan_policy : {'raise', 'omit'}
        For in-memory data: raise on NaN/inf (default) or drop those points.
        Lazy (dask) data are never scanned up front: non-finite points are
        skipped by the kernels' mask and counted in ``n_points_used``.
    require_finite : bool
        Lazy data only: a non-finite point stops the fit in its first pass
        (``check_finite=True``).
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {list(NAN_POLICIES)}, got {nan_policy!r}")
    y = _unwrap(y, "y")
    _check_numeric(y, "y")
    if y.ndim > 1:
        raise ValueError(
            f"y must be 1-D; got shape {tuple(y.shape)}. Flatten it (and x) first, or use "
            "the xarray accessor ds.nlsq.fit for per-pixel fits")
    xs, form, lead = _split_x(x)
    if y.ndim == 0:                       # one value for every point, as scipy broadcasts
        y = np.full(int(xs[0].shape[0]), float(y))
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("y is empty: a fit needs at least one data point")
    for i, xi in enumerate(xs):
        _check_numeric(xi, "x")
        if int(xi.shape[0]) != n:
            raise ValueError(f"x has {int(xi.shape[0])} points (input {i}) but y has {n}: "
                             "they must have the same length along the last axis")

    cov = None
    if sigma is not None:
        sigma = _unwrap(sigma, "sigma")
        _check_numeric(sigma, "sigma")
        if sigma.ndim == 0:
            sigma = np.full(n, float(sigma)) if not _is_dask(sigma) else sigma
        elif sigma.ndim == 2:
            sigma, cov = _covariance_sigma(sigma, n, lazy=any(map(_is_dask, (*xs, y))))
        elif sigma.ndim > 2:
            raise ValueError(f"sigma must be a scalar, 1-D (one standard deviation per point) "
                             f"or a 2-D covariance matrix; got shape {tuple(sigma.shape)}")
        if sigma is not None and sigma.ndim == 1 and int(sigma.shape[0]) != n:
            raise ValueError(f"sigma has {int(sigma.shape[0])} values but y has {n}")
        if sigma is not None and not _is_dask(sigma) and np.any(np.asarray(sigma) <= 0):
            raise ValueError("sigma must be positive everywhere")

    arrays = [*xs, y] + ([sigma] if sigma is not None else [])
    lazy = any(_is_dask(a) for a in arrays)
    itemsize = max(np.dtype(a.dtype).itemsize for a in arrays)

    if not lazy:
        bad = np.ones(n, dtype=bool)
        for a in arrays:
            bad &= np.isfinite(a)
        if cov is not None:
            bad &= np.all(np.isfinite(cov), axis=0) & np.all(np.isfinite(cov), axis=1)
        n_bad = n - int(bad.sum())
        if n_bad and nan_policy == "raise":
            where = ", ".join(f"{name}: {c}" for name, c in
                              [("x", sum(_nonfinite_count(xi) for xi in xs)),
                               ("y", _nonfinite_count(y)),
                               ("sigma", _nonfinite_count(sigma) if sigma is not None else 0)] if c)
            raise ValueError(f"the data contain NaN or inf ({where}); pass nan_policy='omit' "
                             "to skip those points")
        if n_bad:
            xs = tuple(xi[bad] for xi in xs)
            y = y[bad]
            sigma = sigma[bad] if sigma is not None else None
            cov = cov[np.ix_(bad, bad)] if cov is not None else None
            n = int(bad.sum())
        return Inputs(xs, y, sigma, form, n, itemsize, False, x_lead=lead,
                      cov_factor=None if cov is None else _cholesky(cov))

    chunks = next(a.chunks[0] for a in arrays if _is_dask(a))
    return Inputs(xs, y, sigma, form, n, itemsize, True,
                  partition_points=int(max(chunks)), n_partitions=len(chunks), x_lead=lead,
                  require_finite=require_finite)


def _split_x(x):
    """``(xs, form, lead)``: the inputs as a tuple of 1-D arrays, how the model takes
    them, and the leading shape of an N-D ``x`` (whose last axis is the point axis)."""
    if isinstance(x, (tuple, list)) and len(x) > 0 and not isinstance(x[0], numbers.Number):
        xs = tuple(_unwrap(xi, f"x[{i}]") for i, xi in enumerate(x))
        for i, xi in enumerate(xs):
            if xi.ndim != 1:
                raise ValueError(f"x[{i}] must be 1-D like y; got shape {tuple(xi.shape)}")
        return xs, "tuple", ()
    xa = _unwrap(x, "x")
    if xa.ndim == 0:
        raise ValueError("x must be 1-D, (k, N), (..., N) or a tuple of 1-D arrays; got a "
                         "scalar")
    if xa.ndim == 1:
        return (xa,), "vector", ()
    rows = xa.reshape(-1, xa.shape[-1])
    lead = tuple(int(d) for d in xa.shape[:-1]) if xa.ndim > 2 else ()
    return tuple(rows[i] for i in range(rows.shape[0])), "stacked", lead


def _covariance_sigma(sigma, n: int, lazy: bool):
    """``(sigma, cov)`` for a 2-D ``sigma``: a diagonal covariance becomes the 1-D standard
    deviations (what its Cholesky factor is), a full one is kept for in-memory data."""
    if _is_dask(sigma):
        raise ValueError("a 2-D sigma (covariance matrix) must be a numpy array; for dask data "
                         "give the 1-D standard deviations (the square roots of its diagonal)")
    cov = np.asarray(sigma, dtype=np.float64)
    if cov.shape != (n, n):
        raise ValueError(f"a 2-D sigma is the covariance matrix of y and must have shape "
                         f"({n}, {n}); got {cov.shape}")
    off = cov - np.diag(np.diagonal(cov))
    if not np.any(off[np.isfinite(off)]):
        return np.sqrt(np.diagonal(cov)), None
    if lazy:
        raise ValueError("a full covariance matrix sigma couples the data points, which an "
                         "out-of-core fit reads in independent partitions: compute x and y "
                         "into memory (numpy) to fit with it, or pass the 1-D standard "
                         "deviations if the errors are independent")
    return None, cov


def _cholesky(cov):
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError("sigma (a covariance matrix) must be positive definite") from None
