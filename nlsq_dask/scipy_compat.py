"""``nlsq_dask.curve_fit``: ``scipy.optimize.curve_fit``'s signature, defaults, return
forms and errors, solved by :func:`nlsq_dask.fit` (numpy, dask or xarray data).

What differs from scipy, and why, is on the "Coming from scipy" page: one solver for
every ``method``, exact (autodiff) Jacobians, models written with ``jax.numpy`` and
pointwise in ``x``.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from .api import fit
from .errors import FitWarning

NAN_POLICIES = (None, "raise", "omit", "propagate")
# least_squares / leastsq options that only tune finite differences or printing: moot
# with exact derivatives, accepted so that scipy code runs
_IGNORED = ("diff_step", "epsfcn", "tr_options")


def _n_params(f) -> int:
    """scipy's count of fit parameters: the positional arguments after ``x``."""
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        raise ValueError("Unable to determine number of fit parameters.") from None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        raise ValueError("Unable to determine number of fit parameters.")
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params) - 1
    if n < 1:
        raise ValueError("Unable to determine number of fit parameters.")
    return n


def _is_lazy(a) -> bool:
    """A dask array, or an xarray object backed by one (never computed to be checked)."""
    return hasattr(a, "dask") or hasattr(getattr(a, "data", None), "dask")


def _contains_nan(a) -> bool:
    return a is not None and not _is_lazy(a) and bool(np.isnan(np.asarray(a, float)).any())


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False, check_finite=None,
              bounds=(-np.inf, np.inf), method=None, jac=None, *, full_output=False,
              nan_policy=None, **kwargs):
    """Use non-linear least squares to fit a function, ``f``, to data, as
    :func:`scipy.optimize.curve_fit` does.

    Parameters
    ----------
    f : callable
        ``f(x, *params)`` written with ``jax.numpy`` and pointwise in ``x``.
    xdata : array_like of shape (N,), (k, N) or (..., N), tuple of arrays, or None
        The independent variable(s), numpy, dask or xarray; the last axis is the point
        axis. ``None`` hands ``f`` the point index ``0, 1, ..., N - 1``.
    ydata : array_like of shape (N,), or scalar
        The observations (a scalar is the same at every point).
    p0 : array_like, optional
        Initial guess (default: ones, or scipy's feasible start inside bounds).
    sigma : None, scalar, (N,) or (N, N) array_like
        Standard deviations of ``ydata``, or its covariance matrix.
    absolute_sigma : bool
        As scipy: if False, ``pcov`` is scaled by the reduced χ².
    check_finite : bool, optional
        Raise on NaN or inf in the inputs (default: True unless ``nan_policy`` is
        given). For dask data the check happens in the first pass.
    bounds : 2-tuple of array_like or scipy.optimize.Bounds
        Lower and upper bounds on the parameters.
    method : {'trf', 'dogbox', 'lm'}, optional
        Accepted as in scipy; all solved by one trust-region reflective algorithm.
    jac : callable or {'2-point', '3-point', 'cs'}, optional
        ``jac(x, *params) -> (N, p)`` in ``jax.numpy``; the strings mean the exact
        autodiff Jacobian.
    full_output : bool
        Also return ``infodict``, ``mesg`` and ``ier``.
    nan_policy : {None, 'raise', 'omit'}
        NaN in the inputs: not checked beyond ``check_finite`` (None), an error, or left
        out. ``'propagate'`` is refused, as scipy does.
    **kwargs
        ``least_squares``/``leastsq`` options (``maxfev``, ``max_nfev``, ``ftol``,
        ``xtol``, ``gtol``, ``loss``, ``f_scale``, ``x_scale``, ``tr_solver``,
        ``verbose``; a tolerance of None switches its test off, as scipy) and any keyword
        of :func:`nlsq_dask.fit` (``tier``, ``client``, ...).

    Returns
    -------
    popt, pcov : ndarray
        Optimal parameters and their covariance.
    infodict, mesg, ier
        With ``full_output``: ``infodict['nfev']``, ``infodict['fvec']`` (the weighted
        residuals; a dask array for dask data), the message and the status (1-4).

    Raises
    ------
    RuntimeError
        "Optimal parameters not found: ..." when the fit did not converge.
    ValueError, TypeError
        As scipy: NaN in the data, an initial guess outside the bounds, ``'lm'`` with
        bounds, more parameters than points (``TypeError``), ...
    """
    if "args" in kwargs:
        raise ValueError("'args' is not a supported keyword argument.")
    if nan_policy not in NAN_POLICIES:
        raise ValueError("nan_policy must be one of {'raise', 'omit', None}")
    if nan_policy == "propagate":
        raise ValueError("`nan_policy='propagate'` is not supported by this function.")
    if p0 is None:
        _n_params(f)
    if check_finite is None:
        check_finite = nan_policy is None
    if xdata is None:
        xdata = np.arange(np.shape(ydata)[-1], dtype=float)
    if check_finite:
        for a in (xdata, ydata) if not isinstance(xdata, (tuple, list)) else (*xdata, ydata):
            if not _is_lazy(a):          # lazy data are checked in the first pass
                np.asarray_chkfinite(np.asarray(a, dtype=float))
    elif nan_policy == "raise" and any(_contains_nan(a) for a in (
            *(xdata if isinstance(xdata, (tuple, list)) else (xdata,)), ydata, sigma)):
        raise ValueError("The input contains nan values")
    for name in _IGNORED:
        kwargs.pop(name, None)
    if "verbose" in kwargs:
        kwargs.setdefault("progress", bool(kwargs.pop("verbose")))
    for tol in ("ftol", "xtol", "gtol"):          # scipy: None disables the test
        if tol in kwargs and kwargs[tol] is None:
            kwargs[tol] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)      # not converged: raised below
        result = fit(f, xdata, ydata, p0, sigma=sigma, absolute_sigma=absolute_sigma,
                     bounds=bounds, method=method, jac=jac,
                     check_finite=True if check_finite or nan_policy == "raise" else (
                         None if nan_policy == "omit" else False),
                     nan_policy="omit" if nan_policy == "omit" else "raise", **kwargs)
    if not result.success:
        raise RuntimeError(f"Optimal parameters not found: {result.message}")
    if full_output:
        infodict = {"nfev": result.nfev, "fvec": result.fun}
        return result.popt, result.pcov, infodict, result.message, result.status
    return result.popt, result.pcov
