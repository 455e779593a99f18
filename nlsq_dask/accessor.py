"""The ``nlsq`` accessor: ``Dataset.nlsq.fit`` / ``DataArray.nlsq.fit``.

Same interface and outputs as ``xarray.Dataset.curvefit`` (coordinates by name or
DataArray, ``reduce_dims``, ``skipna``, ``p0``/``bounds`` dicts of scalars or
DataArrays, ``param_names``, ``errors``, ``kwargs``), two ways of running:

* **global** — every dimension of a variable is reduced: the data and coordinates are
  flattened lazily (dask ``ravel``; nothing computed up front) and fitted once by
  :func:`nlsq_dask.fit` with its tiers, so chunks in every dimension work. On dask data
  the result is lazy like any xarray result: the fit runs when it is computed (or
  written, ``to_zarr``); on numpy data it runs at the call (:mod:`.accessor_global`);
* **per pixel** — otherwise: each pixel (point of the kept dimensions) is its own
  problem, solved by the batched trust-region solver on each dask block
  (:mod:`.accessor_pixels`); the result stays lazy until computed and can go straight
  to ``to_zarr``.

Outputs: ``[var]_curvefit_coefficients`` (``param``), ``[var]_curvefit_covariance``
(``cov_i``, ``cov_j``), ``[var]_curvefit_status`` (scipy's status codes, -1 no usable
point or residuals not finite at ``p0``) and ``[var]_curvefit_cost`` (``½Σρ``); no
``[var]_`` prefix for a DataArray. JAX is imported only when a fit runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Iterable

import numpy as np
import xarray as xr

from .parameters import FixedParameters, check_names
from .accessor_global import global_fit
from .accessor_pixels import pixel_fit
from .api import ENGINE_OPTIONS, fit as _fit

_THIS = "__nlsq_this_array__"
_KWARG_ALIASES = {"maxfev": "max_nfev", "max_nfev": "max_nfev", "ftol": "ftol", "xtol": "xtol",
                  "gtol": "gtol", "loss": "loss", "f_scale": "f_scale",
                  "absolute_sigma": "absolute_sigma"}


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (str, xr.DataArray)) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _initial_guess(params, func, p0, bounds):
    """curvefit's defaults: 1, else the signature's default, made feasible, then p0."""
    try:
        sig = inspect.signature(func).parameters
    except (TypeError, ValueError):
        sig = {}
    guess, limits = {}, {}
    for name in params:
        value = 1.0
        if name in sig and sig[name].default is not inspect.Parameter.empty:
            value = sig[name].default
        lb, ub = bounds.get(name, (-np.inf, np.inf))
        limits[name] = (lb, ub)
        if name in bounds:
            feasible = xr.where(np.isfinite(lb), xr.where(np.isfinite(ub), 0.5 * (lb + ub), lb + 1),
                                xr.where(np.isfinite(ub), ub - 1, 0.0))
            value = xr.where((value < lb) | (value > ub), feasible, value)
        guess[name] = p0.get(name, value)
    return guess, limits


def _by_name(value, label: str, names) -> dict:
    """``p0``/``bounds`` as curvefit's dict; a sequence ``p0`` is taken in the order of
    the parameters (``names``: param_names, or the model to read them from)."""
    from collections.abc import Mapping

    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if label == "p0" and not isinstance(value, (str, xr.DataArray)) and np.ndim(value) == 1:
        from .solver import infer_param_names

        params = (infer_param_names(names, None, len(value)) if callable(names)
                  else infer_param_names(None, names, len(value)))
        return dict(zip(params, value))
    hint = ("{name: value}, or one value per parameter in order" if label == "p0"
            else "{name: (lower, upper)}")
    raise TypeError(f"{label} must be a dict {hint} (as xarray's curvefit takes it); got "
                    f"{type(value).__name__}")


def _check_param_dims(p0, bounds, kept):
    for name, value in p0.items():
        if isinstance(value, xr.DataArray) and set(value.dims) - set(kept):
            raise ValueError(f"Initial guess for '{name}' has unexpected dimensions "
                             f"{tuple(set(value.dims) - set(kept))}. It should only have "
                             f"dimensions that are in data dimensions {kept}.")
    for name, pair in bounds.items():
        for label, b in zip(("Lower", "Upper"), pair):
            if isinstance(b, xr.DataArray) and set(b.dims) - set(kept):
                raise ValueError(f"{label} bound for '{name}' has unexpected dimensions "
                                 f"{tuple(set(b.dims) - set(kept))}. It should only have "
                                 f"dimensions that are in data dimensions {kept}.")


def _check_param_names(params, p0, bounds) -> None:
    """Every name in ``p0`` and ``bounds`` is a parameter; scalar bounds are ordered."""
    for label, given in (("p0", p0), ("bounds", bounds)):
        check_names(given, params, label)
    for name, pair in bounds.items():
        try:
            lb, ub = pair
        except (TypeError, ValueError):
            raise ValueError(f"bounds[{name!r}] must be a pair (lower, upper); got {pair!r}") from None
        if not isinstance(lb, xr.DataArray) and not isinstance(ub, xr.DataArray):
            if np.isnan(float(lb)) or np.isnan(float(ub)):
                raise ValueError(f"bounds[{name!r}] must not be NaN (use -inf/inf for no bound)")
            if float(lb) > float(ub):
                raise ValueError(f"bounds[{name!r}] has lower bound {lb} > upper bound {ub}")


def _check_model(func, params, guess, n_coords: int, n_points: int) -> None:
    """The model traces with JAX and is pointwise (see :mod:`nlsq_dask.solver.pointwise`),
    checked at the first pixel's start before anything runs."""
    from .solver import ModelSpec
    from .solver.pointwise import check_model

    def first(value) -> float:
        if isinstance(value, xr.DataArray):
            value = value.isel({d: 0 for d in value.dims}).values
        return float(np.asarray(value))

    spec = ModelSpec(func, tuple(params), "vector" if n_coords == 1 else "stacked", n_coords)
    check_model(spec, [first(guess[k]) for k in params], n_points)


def _variables_to_fit(ds, reduce_) -> dict:
    """The data variables that have a fit dimension; the others are left out with a warning
    (a variable without one would be fitted to a single point)."""
    import warnings

    keep = {name: da for name, da in ds.data_vars.items() if set(da.dims) & set(reduce_)}
    left_out = [name for name in ds.data_vars if name not in keep]
    if not keep:
        raise ValueError(f"no data variable has the fit dimension(s) {list(reduce_)}: "
                         "there is nothing to fit")
    if left_out:
        warnings.warn(f"data variables {left_out} do not have the fit dimension(s) "
                      f"{list(reduce_)} and are left out of the fit", UserWarning, stacklevel=4)
    return keep


def _options(kwargs, fit_options) -> dict:
    opts = dict(fit_options)
    for key, value in (kwargs or {}).items():
        if key not in _KWARG_ALIASES:
            raise TypeError(f"kwargs key {key!r} is not supported; supported curve_fit keywords "
                            f"are {sorted(_KWARG_ALIASES)} (other options go to fit() directly)")
        opts[_KWARG_ALIASES[key]] = value
    valid = set(inspect.signature(_fit).parameters) - {"model", "x", "y", "p0", "bounds",
                                                       "param_names", "nan_policy"}
    unknown = set(opts) - valid - set(ENGINE_OPTIONS)
    if unknown:
        raise TypeError(f"nlsq.fit() got unexpected option(s) {sorted(unknown)}")
    return opts


def curvefit(obj, coords, func, reduce_dims=None, skipna=True, p0=None, bounds=None,
             param_names=None, errors="raise", kwargs=None, **fit_options) -> xr.Dataset:
    """The function behind ``obj.nlsq.fit`` (see :meth:`NLSQDatasetAccessor.fit`)."""
    from .solver import infer_param_names

    p0, bounds = _by_name(p0, "p0", param_names or func), _by_name(bounds, "bounds", None)
    if errors not in ("raise", "ignore"):
        raise ValueError('errors must be either "raise" or "ignore"')
    opts = _options(kwargs, fit_options)
    is_array = isinstance(obj, xr.DataArray)
    ds = obj.to_dataset(name=_THIS) if is_array else obj

    reduce_ = [d for d in _as_list(reduce_dims)]
    coords_ = [ds[c] if isinstance(c, Hashable) and not isinstance(c, xr.DataArray) else c
               for c in _as_list(coords)]
    for c in coords_:
        reduce_ += [d for d in ds.dims if c.equals(ds[d])]
    reduce_ = [d for d in ds.dims if d in set(reduce_)] + [d for d in dict.fromkeys(reduce_)
                                                           if d not in ds.dims]
    if not reduce_:
        raise ValueError("No arguments to `coords` were identified as a dimension on the calling "
                         "object, and no dims were supplied to `reduce_dims`. This would result "
                         "in fitting on scalar data.")
    missing = [d for d in reduce_ if d not in ds.dims]
    if missing:
        raise ValueError(f"reduce_dims {missing} are not dimensions of the data; its "
                         f"dimensions are {list(ds.dims)}")
    kept = [d for d in ds.dims if d not in reduce_]
    _check_param_dims(p0, bounds, kept)
    coords_ = [c.broadcast_like(ds, exclude=kept) for c in xr.broadcast(*coords_)]
    params = list(infer_param_names(func, param_names))
    _check_param_names(params, p0, bounds)
    guess, limits = _initial_guess(params, func, p0, bounds)
    held = _held(opts.pop("fixed", None), params, guess, limits)
    func, params, guess, limits = (held.model(func), list(held.free_names), held.free(guess),
                                   held.free(limits))
    variables = _variables_to_fit(ds, reduce_)
    _check_model(func, params, guess, len(coords_),
                 int(np.prod([ds.sizes[d] for d in reduce_])))

    result = xr.Dataset()
    for name, da in variables.items():
        prefix = "" if name == _THIS else f"{name}_"
        if not set(da.dims) - set(reduce_):
            out = global_fit(da, coords_, func, params, guess, limits, reduce_, skipna,
                              errors, opts)
        else:
            out = pixel_fit(da, coords_, func, params, guess, limits, reduce_, skipna,
                             errors, opts)
        for key, var in out.items():
            result[f"{prefix}curvefit_{key}"] = var
    result = result.assign_coords(param=params, cov_i=params, cov_j=params)
    if held:
        result = _with_fixed(result, held)
    result.attrs = obj.attrs.copy()
    return result


def _held(fixed, params, guess, limits) -> FixedParameters:
    """``fixed`` of the accessor: scalar values only (one value for every pixel)."""
    held = FixedParameters.build(fixed, tuple(params), {
        k: v for k, v in guess.items() if not isinstance(v, xr.DataArray)})
    for name, value in held.values.items():
        lb, ub = limits[name]
        if isinstance(lb, xr.DataArray) or isinstance(ub, xr.DataArray):
            raise ValueError(f"fixed[{name!r}]: its bounds are per pixel; give it scalar bounds "
                             "or none")
    held.check_bounds([limits[n][0] for n in params], [limits[n][1] for n in params])
    return held


def _with_fixed(result: xr.Dataset, held: FixedParameters) -> xr.Dataset:
    """Outputs over the free parameters expanded to every parameter: the fixed ones take
    their value in the coefficients and 0 in the covariance (lazily for dask outputs)."""
    names = list(held.names)
    value = xr.DataArray([held.values.get(n, np.nan) for n in names], dims="param",
                         coords={"param": names})
    out = result.reindex(param=names, cov_i=names, cov_j=names, fill_value=0.0)
    for key, var in out.data_vars.items():
        if "param" in var.dims:
            out[key] = var.where(value.isnull(), value).transpose(*var.dims)
    return out


# ----------------------------------------------------------------------------- accessors
class _NLSQAccessor:
    def __init__(self, obj):
        self._obj = obj

    def fit(self, coords, func, reduce_dims=None, skipna=True, p0=None, bounds=None,
            param_names=None, errors="raise", kwargs=None, **fit_options) -> xr.Dataset:
        """Fit ``func(x, *params)`` like ``curvefit``: per pixel, or globally.

        Parameters
        ----------
        coords, reduce_dims, skipna, p0, bounds, param_names, errors, kwargs
            As :meth:`xarray.Dataset.curvefit`. ``kwargs`` accepts the curve_fit
            keywords ``absolute_sigma``, ``ftol``, ``xtol``, ``gtol``, ``maxfev``/``max_nfev``,
            ``loss`` and ``f_scale``. ``p0`` may also be a sequence, one value per
            parameter in order.
        func : callable
            ``func(x, *params)`` written with ``jax.numpy`` and pointwise in ``x``; with
            several coordinates ``x`` is a ``(k, N)`` array, as in curvefit.
        **fit_options
            Passed to :func:`nlsq_dask.fit` (``preset``, ``config``, ``tier``, ``loss``,
            ``client``, ...). Per-pixel fits use the tolerances, ``max_nfev``, loss and
            ``absolute_sigma``; tiers and multi-start apply to global fits. ``fixed``
            (``{name: value}`` or names whose scalar ``p0`` value is kept) holds
            parameters fixed on either kind: their coefficient is that value and their
            covariance rows and columns are 0.

        Returns
        -------
        xarray.Dataset
            ``[var]_curvefit_coefficients`` (``param``), ``[var]_curvefit_covariance``
            (``cov_i``, ``cov_j``), ``[var]_curvefit_status``, ``[var]_curvefit_cost``;
            a global fit of numpy data adds ``nlsq_tier``, ``nlsq_nfev``,
            ``nlsq_explanation``, ... to the coefficients' attributes. A global fit of
            dask data is lazy (it runs on ``compute()``) and has no such attributes,
            since they are known only once it ran; ``progress=True`` reports them.
        """
        return curvefit(self._obj, coords, func, reduce_dims=reduce_dims, skipna=skipna, p0=p0,
                        bounds=bounds, param_names=param_names, errors=errors, kwargs=kwargs,
                        **fit_options)

    def plot_map(self, param, var=None, ax=None, **kwargs):
        """Map of one fitted parameter of an ``nlsq.fit`` result over the kept dimensions.

        ``param`` is a parameter name, or ``'cost'`` / ``'status'``; ``error=True`` maps
        its standard error. See :func:`nlsq_dask.plotting.plot_map` (needs matplotlib).
        """
        from .plotting import plot_map

        return plot_map(self._obj, param, var=var, ax=ax, **kwargs)


@xr.register_dataset_accessor("nlsq")
class NLSQDatasetAccessor(_NLSQAccessor):
    """``Dataset.nlsq.fit``: curvefit-compatible fits with nlsq_dask."""


@xr.register_dataarray_accessor("nlsq")
class NLSQDataArrayAccessor(_NLSQAccessor):
    """``DataArray.nlsq.fit``: curvefit-compatible fits with nlsq_dask."""
