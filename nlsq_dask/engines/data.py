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
        raise TypeError(f"{name} must be array-like of numbers; got {type(a).__name__}") from exc
    return arr


def _check_numeric(a, name: str) -> None:
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")


def _nonfinite_count(a) -> int:
    return int(np.size(a) - np.count_nonzero(np.isfinite(a)))


def prepare_inputs(x, y, sigma=None, nan_policy: str = "raise") -> Inputs:
    """Validate and normalise the data of a fit.

    Parameters
    ----------
    x : array-like, (k, N) array-like or tuple of 1-D array-likes
        Independent variable(s); numpy, dask or xarray.
    y : 1-D array-like
        Observations.
    sigma : 1-D array-like or scalar, optional
        Standard deviations of ``y`` (scipy's 1-D ``sigma``).
    nan_policy : {'raise', 'omit'}
        For in-memory data: raise on NaN/inf (default) or drop those points.
        Lazy (dask) data are never scanned up front: non-finite points are
        skipped by the kernels' mask and counted in ``n_points_used``.
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {list(NAN_POLICIES)}, got {nan_policy!r}")
    y = _unwrap(y, "y")
    _check_numeric(y, "y")
    if y.ndim != 1:
        raise ValueError(
            f"y must be 1-D; got shape {tuple(y.shape)}. Flatten it (and x) first, or use "
            "the xarray accessor ds.nlsq.fit for per-pixel fits")
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("y is empty: a fit needs at least one data point")

    if isinstance(x, (tuple, list)) and len(x) > 0 and not isinstance(x[0], numbers.Number):
        xs = tuple(_unwrap(xi, f"x[{i}]") for i, xi in enumerate(x))
        form = "tuple"
        for i, xi in enumerate(xs):
            if xi.ndim != 1:
                raise ValueError(f"x[{i}] must be 1-D like y; got shape {tuple(xi.shape)}")
    else:
        xa = _unwrap(x, "x")
        if xa.ndim == 1:
            xs, form = (xa,), "vector"
        elif xa.ndim == 2:
            xs, form = tuple(xa[i] for i in range(xa.shape[0])), "stacked"
        else:
            raise ValueError(f"x must be 1-D, (k, N) or a tuple of 1-D arrays; got shape {tuple(xa.shape)}")
    for i, xi in enumerate(xs):
        _check_numeric(xi, "x")
        if int(xi.shape[0]) != n:
            raise ValueError(f"x has {int(xi.shape[0])} points (input {i}) but y has {n}: "
                             "they must have the same length along the last axis")

    if sigma is not None:
        sigma = _unwrap(sigma, "sigma")
        _check_numeric(sigma, "sigma")
        if sigma.ndim == 0:
            sigma = np.full(n, float(sigma)) if not _is_dask(sigma) else sigma
        elif sigma.ndim == 2:
            raise ValueError("sigma must be 1-D (one standard deviation per point); a 2-D "
                             "covariance matrix is not supported")
        if sigma.ndim == 1 and int(sigma.shape[0]) != n:
            raise ValueError(f"sigma has {int(sigma.shape[0])} values but y has {n}")
        if not _is_dask(sigma) and np.any(np.asarray(sigma) <= 0):
            raise ValueError("sigma must be positive everywhere")

    arrays = [*xs, y] + ([sigma] if sigma is not None else [])
    lazy = any(_is_dask(a) for a in arrays)
    itemsize = max(np.dtype(a.dtype).itemsize for a in arrays)

    if not lazy:
        bad = np.ones(n, dtype=bool)
        for a in arrays:
            bad &= np.isfinite(a)
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
            n = int(bad.sum())
        return Inputs(xs, y, sigma, form, n, itemsize, False)

    chunks = next(a.chunks[0] for a in arrays if _is_dask(a))
    return Inputs(xs, y, sigma, form, n, itemsize, True,
                  partition_points=int(max(chunks)), n_partitions=len(chunks))
