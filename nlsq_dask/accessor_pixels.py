"""Per-pixel fits of the ``nlsq`` accessor: each point of the kept dimensions is its own
problem, solved by the batched trust-region solver of :mod:`nlsq_dask.solver.batched` on
each block (``xr.apply_ufunc(..., dask='parallelized')``, fit dimensions whole in a block).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr

from .arguments import check_flag
from .errors import InsufficientDataError

#: fit() options a per-pixel fit uses
_PIXEL_OPTIONS = {"preset", "config", "goal", "tier", "loss", "f_scale", "ftol", "xtol", "gtol",
                  "max_nfev", "yaml_path", "absolute_sigma", "memory_limit_gb", "chunk_size",
                  "client", "split_every", "progress", "reduction", "x_scale", "missing_chunks"}


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


def pixel_fit(da, coords_, func, params, guess, limits, reduce_, skipna, errors, opts):
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
