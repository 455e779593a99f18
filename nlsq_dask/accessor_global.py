"""Global fits of the ``nlsq`` accessor: every dimension reduced, one :func:`nlsq_dask.fit`.

The data and coordinates are flattened lazily; on numpy data the fit runs at the call, on
dask data the outputs are dask arrays and the fit runs when they are computed.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .api import fit as _fit
from .errors import InsufficientDataError


def global_fit(da, coords_, func, params, guess, limits, reduce_, skipna, errors, opts):
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
