"""The ``nlsq`` accessor: ``Dataset.nlsq.fit`` / ``DataArray.nlsq.fit``.

Same interface and outputs as ``xarray.Dataset.curvefit`` (coordinates by name or
DataArray, ``reduce_dims``, ``skipna``, ``p0``/``bounds`` dicts of scalars or
DataArrays, ``param_names``, ``errors``, ``kwargs``), two ways of running:

* **global** — every dimension of a variable is reduced: the data and coordinates are
  flattened lazily (dask ``ravel``; nothing computed up front) and fitted once by
  :func:`nlsq_dask.fit` with its tiers, so chunks in every dimension work. On dask data
  the result is lazy like any xarray result: the fit runs when it is computed (or
  written, ``to_zarr``); on numpy data it runs at the call;
* **per pixel** — otherwise: each pixel (point of the kept dimensions) is its own
  problem, solved by the batched LM of :mod:`nlsq_dask.solver.batched` on each dask
  block (``xr.apply_ufunc(..., dask='parallelized')``, fit dimensions whole in a block);
  the result stays lazy until computed and can go straight to ``to_zarr``.

Outputs: ``[var]_curvefit_coefficients`` (``param``), ``[var]_curvefit_covariance``
(``cov_i``, ``cov_j``), ``[var]_curvefit_status`` (scipy's status codes, -1 no usable
point or residuals not finite at ``p0``) and ``[var]_curvefit_cost`` (``½Σρ``); no
``[var]_`` prefix for a DataArray. JAX is imported only when a fit runs.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from .arguments import check_flag
from .parameters import FixedParameters, check_names
from .errors import InsufficientDataError
from .api import ENGINE_OPTIONS, fit as _fit

_THIS = "__nlsq_this_array__"
_KWARG_ALIASES = {"maxfev": "max_nfev", "max_nfev": "max_nfev", "ftol": "ftol", "xtol": "xtol",
                  "gtol": "gtol", "loss": "loss", "f_scale": "f_scale",
                  "absolute_sigma": "absolute_sigma"}
_PIXEL_OPTIONS = {"preset", "config", "goal", "tier", "loss", "f_scale", "ftol", "xtol", "gtol",
                  "max_nfev", "yaml_path", "absolute_sigma", "memory_limit_gb", "chunk_size",
                  "client", "split_every", "progress", "reduction", "x_scale", "missing_chunks"}


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
            out = _global_fit(da, coords_, func, params, guess, limits, reduce_, skipna,
                              errors, opts)
        else:
            out = _pixel_fit(da, coords_, func, params, guess, limits, reduce_, skipna,
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


# ----------------------------------------------------------------------------- global
def _global_fit(da, coords_, func, params, guess, limits, reduce_, skipna, errors, opts):
    """One fit over all the points of ``da``, through :func:`nlsq_dask.fit`.

    On numpy data it runs now; on dask data the outputs are dask arrays and the fit runs
    when they are computed (as one task that runs the fit's passes: on a distributed
    worker through ``worker_client``, so they still spread over the cluster).
    """
    def flat(a):
        a = a.broadcast_like(da).transpose(*da.dims)
        if da.chunks is not None and a.chunks is None:
            a = a.chunk(dict(zip(da.dims, da.chunks)))
        return a.data.ravel()

    y = flat(da)
    xs = [flat(c) for c in coords_]
    lazy = da.chunks is not None
    if len(xs) == 1:
        x = xs[0]
    elif lazy:
        import dask.array as dsa
        x = dsa.stack([dsa.asarray(v) for v in xs])
    else:
        x = np.vstack(xs)
    scalar = {}
    for key, value in [("p0", guess)] + [("lb", {k: v[0] for k, v in limits.items()}),
                                         ("ub", {k: v[1] for k, v in limits.items()})]:
        scalar[key] = [float(np.asarray(value[p])) for p in params]

    def run(client=None):
        kwargs = dict(opts) if client is None else {**opts, "client": client}
        return _global_outcome(func, x, y, scalar, params, skipna, errors, kwargs)

    if not lazy:
        popt, pcov, status, cost, attrs = run()
    else:
        import dask
        import dask.array as dsa

        from .engines.sources import check_chunks_exist

        # as fit() does before its first pass: a store lacking chunks is refused now
        # (a listing of the stores, no data read), not when the result is computed
        check_chunks_exist([y, *xs], [str(da.name), *[str(c.name) for c in coords_]],
                           opts.get("missing_chunks", "raise"))
        opts = {k: v for k, v in opts.items() if k != "client"}   # the task finds its own
        outcome = dask.delayed(_run_in_task, pure=False)(run)
        p = len(params)
        popt = dsa.from_delayed(outcome[0], (p,), float)
        pcov = dsa.from_delayed(outcome[1], (p, p), float)
        status = dsa.from_delayed(outcome[2], (), np.int64)
        cost = dsa.from_delayed(outcome[3], (), np.float64)
        attrs = {}
    return {"coefficients": xr.DataArray(popt, dims=["param"], attrs=attrs),
            "covariance": xr.DataArray(pcov, dims=["cov_i", "cov_j"]),
            "status": xr.DataArray(status), "cost": xr.DataArray(cost)}


def _run_in_task(run):
    """``run()`` in a dask task: on a distributed worker with a client of its cluster
    (``worker_client`` secedes from the worker's thread pool while the passes run)."""
    try:
        from distributed import get_worker, worker_client
        get_worker()
    except (ImportError, ValueError):
        return run()
    with worker_client() as client:
        return run(client)


def _global_outcome(func, x, y, scalar, params, skipna, errors, opts):
    """``(popt, pcov, status, cost, attrs)`` of the global fit (NaNs where it failed and
    ``errors='ignore'``)."""
    import warnings

    from .api import FitWarning

    nan = np.full(len(params), np.nan)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            res = _fit(func, x, y, p0=scalar["p0"], bounds=(scalar["lb"], scalar["ub"]),
                       param_names=params, nan_policy="omit" if skipna else "raise", **opts)
    except InsufficientDataError:
        if errors == "raise":
            raise
        return nan, np.full((len(params),) * 2, np.nan), np.int64(-1), np.float64(np.nan), {}
    if not res.success and errors == "raise":
        raise RuntimeError(f"Optimal parameters not found: {res.message}")
    ok = res.success
    popt = res.popt if ok else nan
    pcov = res.pcov if ok else np.full((len(params),) * 2, np.nan)
    attrs = {"nlsq_tier": res.tier.value, "nlsq_nfev": res.nfev, "nlsq_nit": res.nit,
             "nlsq_cost": res.cost, "nlsq_status": res.status, "nlsq_message": res.message,
             "nlsq_n_points_used": res.n_points_used,
             "nlsq_explanation": res.selection.explain() if res.selection else ""}
    return popt, pcov, np.int64(res.status), np.float64(res.cost), attrs


# ----------------------------------------------------------------------------- per pixel
def _pixel_settings(opts, n_points) -> dict:
    from .workflow import resolve_config

    cfg = resolve_config(preset=opts.get("preset"), config=opts.get("config"),
                         yaml_path=opts.get("yaml_path"),
                         overrides={k: opts.get(k) for k in ("goal", "loss", "f_scale", "ftol",
                                                             "xtol", "gtol", "max_nfev")})
    unsupported = set(opts) - _PIXEL_OPTIONS
    if unsupported:
        raise TypeError(f"option(s) {sorted(unsupported)} apply to global fits only")
    from .solver.compile_cache import enable_compilation_cache

    enable_compilation_cache(cfg.compilation_cache)
    if callable(cfg.loss):
        raise TypeError("a callable loss applies to global fits only (reduce_dims=...); per-"
                        "pixel fits take the loss names 'linear', 'soft_l1', 'huber', "
                        "'cauchy' and 'arctan'")
    ftol, xtol, gtol = cfg.resolved_tolerances(n_points)
    return dict(ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=cfg.max_nfev, loss=cfg.loss,
                f_scale=cfg.f_scale,
                absolute_sigma=check_flag(opts.get("absolute_sigma", False), "absolute_sigma"))


def _fit_block(y, *args, func, n_params, n_coords, n_core, skipna, errors, settings, threads):
    """apply_ufunc kernel: loop dims first, fit dims last -> popt, pcov, status, cost."""
    from .solver.batched import batched_fit

    xs, rest = args[:n_coords], args[n_coords:]
    core = y.shape[y.ndim - n_core:]
    loop = np.broadcast_shapes(y.shape[: y.ndim - n_core], *[np.shape(a) for a in rest],
                               *[np.shape(x)[: np.ndim(x) - n_core] for x in xs])
    B, N = int(np.prod(loop)), int(np.prod(core))
    Y = np.broadcast_to(y, loop + core).reshape(B, N)       # a view for a contiguous block
    X = []
    for x in xs:
        x = np.asarray(x, np.float64)
        if all(s == 1 for s in x.shape[: x.ndim - n_core]):
            X.append(x.reshape(N))
        else:
            X.append(np.broadcast_to(x, loop + core).reshape(B, N))
    P = [np.broadcast_to(np.asarray(a, np.float64), loop).reshape(B) for a in rest]
    p0, lb, ub = (np.stack(P[i * n_params:(i + 1) * n_params]) for i in range(3))
    if np.any(lb > ub) or np.isnan(lb).any() or np.isnan(ub).any():
        i = int(np.argmax(np.any((lb > ub) | np.isnan(lb) | np.isnan(ub), axis=1)))
        raise ValueError(f"bounds for parameter {i} have a lower bound above the upper bound "
                         "(or NaN) at some pixels; each lower bound must be <= its upper bound")
    W, bad = None, np.zeros(B, bool)
    if not skipna:
        bad = ~np.all(np.isfinite(Y), axis=1)
        for x in X:
            bad |= ~np.all(np.isfinite(x if x.ndim == 2 else x[None, :]), axis=1)
        if bad.any():
            W = np.ones((B, N))
            W[bad] = 0.0
    parts = np.array_split(np.arange(B), max(1, min(threads, B // 512)))

    def run(idx):
        sl = slice(idx[0], idx[-1] + 1)
        return batched_fit(func, n_params, tuple(x if x.ndim == 1 else x[sl] for x in X),
                           Y[sl], None if W is None else W[sl], p0[:, sl], lb[:, sl], ub[:, sl],
                           x_form="vector" if n_coords == 1 else "stacked", **settings)

    if len(parts) > 1:
        with ThreadPoolExecutor(len(parts)) as pool:
            outs = list(pool.map(run, parts))
    else:
        outs = [run(parts[0])]
    popt, pcov, cost, status, nfev, n = (np.concatenate([np.asarray(o[k]) for o in outs], -1)
                                         for k in range(6))
    few = (n > 0) & (n < n_params)     # the solver marks these -1: undetermined
    if errors == "raise" and few.any():
        raise InsufficientDataError(
            f"{int(few.sum())} pixel(s) have fewer usable points than the {n_params} parameters "
            f"(the first has {int(n[np.argmax(few)])}); their parameters are not determined. "
            "Pass errors='ignore' to get NaN there, or fit fewer parameters")
    failed = (status == 0) | ((status < 0) & (n > 0)) | bad
    if errors == "raise" and failed.any():
        i = int(np.argmax(failed))
        why = ("NaN in the data (pass skipna=True to skip them)" if bad[i] else
               "the maximum number of function evaluations is exceeded" if status[i] == 0 else
               "the residuals are not finite at p0")
        raise RuntimeError(f"Optimal parameters not found for {int(failed.sum())} pixel(s): {why}")
    popt = np.where(failed, np.nan, popt)
    pcov = np.where(failed, np.nan, pcov)
    return (popt.T.reshape(loop + (n_params,)), np.moveaxis(pcov, -1, 0).reshape(loop + (n_params,) * 2),
            status.reshape(loop), cost.reshape(loop))


def _pixel_fit(da, coords_, func, params, guess, limits, reduce_, skipna, errors, opts):
    core = [d for d in da.dims if d in reduce_]
    if da.chunks is not None:
        from .engines.sources import check_chunks_exist, guard_reads

        check_chunks_exist([da.data], [str(da.name)], opts.get("missing_chunks", "raise"))
        da = da.copy(data=guard_reads(da.data, str(da.name)))
        da = da.chunk({d: -1 for d in core})
    coords_ = [c.chunk({d: -1 for d in core}) if c.chunks is not None else c for c in coords_]
    n = int(np.prod([da.sizes[d] for d in core]))
    pixels = int(np.prod([da.sizes[d] for d in da.dims if d not in core]))
    show = bool(opts.get("progress"))
    if show:       # the tier line of a per-pixel fit
        sys.stderr.write(
            f"nlsq_dask: per pixel: {pixels:,} fits of {n:,} points each, "
            + ("lazy: they run when the result is computed (watch them with dask's "
               "ProgressBar or dashboard)\n" if da.chunks is not None else "now\n"))
    started = time.perf_counter()
    settings = _pixel_settings(opts, n)
    p = len(params)
    values = ([guess[k] for k in params] + [limits[k][0] for k in params]
              + [limits[k][1] for k in params])
    kernel = dict(func=func, n_params=p, n_coords=len(coords_), n_core=len(core), skipna=skipna,
                  errors=errors,
                  settings=settings, threads=1 if da.chunks is not None else (os.cpu_count() or 1))
    popt, pcov, status, cost = xr.apply_ufunc(
        _fit_block, da, *coords_, *values, kwargs=kernel,
        input_core_dims=[core] * (1 + len(coords_)) + [[]] * len(values),
        output_core_dims=[["param"], ["cov_i", "cov_j"], [], []],
        exclude_dims=set(core), dask="parallelized",
        output_dtypes=[np.float64, np.float64, np.int64, np.float64],
        dask_gufunc_kwargs={"output_sizes": {"param": p, "cov_i": p, "cov_j": p}})
    if show and da.chunks is None:
        from .report import format_seconds

        sys.stderr.write(f"nlsq_dask: {int((status.values > 0).sum()):,} of {pixels:,} pixels "
                         f"converged in {format_seconds(time.perf_counter() - started)}\n")
    return {"coefficients": popt, "covariance": pcov, "status": status, "cost": cost}


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
