"""Pictures of fits: data with the fitted curve, residuals, cost per iteration, parameter maps.

Needs matplotlib (``pip install "nlsq-dask[plot]"``); it is imported inside the
functions, so ``import nlsq_dask`` never imports it. Large data are never loaded:
at most ``max_points`` points are drawn, either an evenly strided subsample or the
means of ``max_points`` bins along ``x`` (one dask computation for each; with dask
data nothing is computed before the plot is asked for).

* :func:`plot_fit` — what :meth:`nlsq_dask.FitResult.plot` draws: three panels
  (data and model, residuals, cost per accepted iteration);
* :func:`plot_map` — a map of one fitted parameter (or its standard error, the
  cost or the status) over the kept dimensions of an ``ds.nlsq.fit`` result.
"""

from __future__ import annotations

import numpy as np

HOW = ("subsample", "bin")


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install 'nlsq-dask[plot]' "
                          "(or pip install matplotlib)") from None
    return plt


def _is_dask(a) -> bool:
    return type(a).__module__.startswith("dask.")


def _compute(*arrays):
    """numpy versions of ``arrays``, computing the dask ones together in one graph."""
    lazy = [i for i, a in enumerate(arrays) if _is_dask(a)]
    out = [np.asarray(a) if not _is_dask(a) else None for a in arrays]
    if lazy:
        import dask

        for i, value in zip(lazy, dask.compute(*[arrays[i] for i in lazy])):
            out[i] = np.asarray(value)
    return out


def _subsample(xs, y, max_points: int):
    """Every ``step``-th point so that at most ``max_points`` remain (lazy on dask)."""
    n = int(y.shape[0])
    step = max(1, -(-n // max_points))
    sl = slice(None, None, step)
    return [xi[sl] for xi in xs], y[sl], step


def _bin(xs, y, max_points: int):
    """Means of x and y in ``max_points`` equal-width bins of x[0] (two dask passes at most).

    The bin edges need the range of x (one pass for lazy data); the sums per bin are
    histograms weighted by x and y (a second pass).
    """
    x0 = xs[0]
    lo, hi = (float(v) for v in _compute(_nanmin(x0), _nanmax(x0)))
    if not hi > lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, max_points + 1)
    if _is_dask(x0) or _is_dask(y):
        import dask.array as da

        x0d, yd = da.asarray(x0), da.asarray(y)
        if x0d.chunks != yd.chunks:
            yd = yd.rechunk(x0d.chunks)
        ok = da.isfinite(x0d) & da.isfinite(yd)
        x0d, yd = da.where(ok, x0d, np.nan), da.where(ok, yd, 0.0)
        parts = [da.histogram(x0d, bins=edges)[0],
                 da.histogram(x0d, bins=edges, weights=da.where(ok, x0d, 0.0))[0],
                 da.histogram(x0d, bins=edges, weights=yd)[0]]
        count, sx, sy = _compute(*parts)
    else:
        x0n, yn = np.asarray(x0, float), np.asarray(y, float)
        ok = np.isfinite(x0n) & np.isfinite(yn)
        count = np.histogram(x0n[ok], bins=edges)[0]
        sx = np.histogram(x0n[ok], bins=edges, weights=x0n[ok])[0]
        sy = np.histogram(x0n[ok], bins=edges, weights=yn[ok])[0]
    keep = count > 0
    return [sx[keep] / count[keep]], sy[keep] / count[keep], count[keep]


def _nanmin(a):
    if _is_dask(a):
        import dask.array as da
        return da.nanmin(a)
    return np.nanmin(np.asarray(a, float))


def _nanmax(a):
    if _is_dask(a):
        import dask.array as da
        return da.nanmax(a)
    return np.nanmax(np.asarray(a, float))


def _data_of(result, x, y, model):
    """The model and the data to draw: explicit arguments, else what ``fit`` kept."""
    model = model if model is not None else getattr(result, "_model", None)
    if x is None and y is None:
        x, y = getattr(result, "_x", None), getattr(result, "_y", None)
    if model is None or x is None or y is None:
        missing = [n for n, v in (("model", model), ("x", x), ("y", y)) if v is None]
        raise ValueError(
            f"this FitResult does not hold its {', '.join(missing)} (results rebuilt from "
            "result.json or a checkpoint keep none); pass them: "
            "nlsq_dask.plotting.plot_fit(result, x, y, model=model)")
    return model, x, y


def plot_fit(result, x=None, y=None, *, model=None, ax=None, max_points: int = 5000,
             how: str = "subsample", title: str | None = None):
    """Data with the fitted model, the residuals and the cost per iteration.

    Parameters
    ----------
    result : FitResult
        A result of :func:`nlsq_dask.fit`.
    x, y : array-like, optional
        The data (numpy, dask or xarray; ``x`` as given to ``fit``: 1-D, ``(k, N)`` or a
        tuple). Default: the data ``fit`` was called with.
    model : callable, optional
        ``model(x, *params)``. Default: the model ``fit`` was called with.
    ax : sequence of 3 matplotlib Axes, optional
        Where to draw the three panels; default: a new figure.
    max_points : int
        Most points drawn. Larger data are subsampled (every ``step``-th point) or,
        with ``how='bin'``, averaged in ``max_points`` bins of ``x`` (one input only;
        several inputs are subsampled). Dask data are reduced by dask and only the
        reduced points computed.
    how : {'subsample', 'bin'}
        How large data are reduced.
    title : str, optional
        Figure title (default: the tier, points and parameters).

    Returns
    -------
    matplotlib.figure.Figure
        With three axes: data and model, residuals (data − model), cost per accepted
        iteration (log scale when positive). With several inputs (``k > 1``) the first
        panel shows the data against the model's prediction instead of a curve.
    """
    plt = _pyplot()
    if how not in HOW:
        raise ValueError(f"how must be one of {list(HOW)}; got {how!r}")
    if int(max_points) < 2:
        raise ValueError(f"max_points must be at least 2; got {max_points!r}")
    model, x, y = _data_of(result, x, y, model)

    from .engines.data import prepare_inputs
    from .solver import ModelSpec

    inputs = prepare_inputs(x, y, None, nan_policy="omit")
    n = inputs.n_points
    xs, yv = list(inputs.xs), inputs.y
    label = "data"
    if n > max_points and how == "bin" and inputs.n_inputs == 1:
        xs, yv, counts = _bin(xs, yv, int(max_points))
        label = f"data, mean of {len(yv):,} bins (~{int(np.median(counts)):,} points each)"
    elif n > max_points:
        xs, yv, step = _subsample(xs, yv, int(max_points))
        label = f"data, every {step:,}th of {n:,} points"
    *xs, yv = _compute(*xs, yv)

    spec = ModelSpec(model, tuple(result.param_names), inputs.x_form, len(xs))
    popt = np.asarray(result.popt, dtype=float)
    order = np.argsort(xs[0], kind="stable")
    xs_sorted = [np.asarray(xi, float)[order] for xi in xs]
    y_sorted = np.asarray(yv, float)[order]
    fitted = np.asarray(spec.evaluate(tuple(xs_sorted), popt))
    resid = y_sorted - fitted

    if ax is None:
        fig, axes = plt.subplots(3, 1, figsize=(7, 8), height_ratios=(3, 1.4, 1.4),
                                 layout="constrained")
    else:
        axes = list(np.ravel(ax))
        if len(axes) != 3:
            raise ValueError(f"ax must be 3 matplotlib Axes (data, residuals, cost); got {len(axes)}")
        fig = axes[0].figure
    a_data, a_res, a_cost = axes
    small = len(y_sorted) <= 200
    style = dict(marker="o", ls="none", ms=3 if small else 1.5, alpha=0.8 if small else 0.4,
                 color="0.35", rasterized=not small)
    xlabel = "x" if inputs.n_inputs == 1 else "x[0]"
    if inputs.n_inputs == 1:
        a_data.plot(xs_sorted[0], y_sorted, label=label, **style)
        a_data.plot(xs_sorted[0], fitted, color="C3", lw=2, label="fit")
        a_data.set_xlabel(xlabel)
        a_data.set_ylabel("y")
    else:
        a_data.plot(fitted, y_sorted, label=label, **style)
        lim = [float(np.nanmin(fitted)), float(np.nanmax(fitted))]
        a_data.plot(lim, lim, color="C3", lw=2, label="y = model")
        a_data.set_xlabel("model")
        a_data.set_ylabel("y")
    a_data.legend(loc="best", fontsize="small")
    a_res.plot(xs_sorted[0], resid, **style)
    a_res.axhline(0.0, color="C3", lw=1)
    a_res.set_xlabel(xlabel)
    a_res.set_ylabel("y − model")

    hist = [h for h in (result.history or []) if "cost" in h]
    if hist:
        it = [int(h.get("iteration", i)) for i, h in enumerate(hist)]
        cost = np.asarray([float(h["cost"]) for h in hist])
        a_cost.plot(it, cost, marker="o", color="C0")
        if np.all(cost > 0):
            a_cost.set_yscale("log")
        a_cost.xaxis.get_major_locator().set_params(integer=True)
    else:
        a_cost.text(0.5, 0.5, "no iteration history", ha="center", va="center",
                    transform=a_cost.transAxes)
    a_cost.set_xlabel("iteration")
    a_cost.set_ylabel("cost ½Σρ(r²)")
    if title is None:
        params = ", ".join(f"{k}={v:.4g}" for k, v in zip(result.param_names, popt))
        tier = getattr(result.tier, "value", result.tier)
        title = f"{tier} fit of {result.n_points_used:,} points: {params}"
    if ax is None:
        fig.suptitle(title, fontsize="medium")
    else:
        a_data.set_title(title, fontsize="medium")
    return fig


def _coefficients(ds, var):
    """``(name, coefficients DataArray, dataset)`` of an ``nlsq.fit`` result."""
    import xarray as xr

    if isinstance(ds, xr.DataArray):
        if "param" not in ds.dims:
            raise ValueError("plot_map needs the Dataset returned by .nlsq.fit (or its "
                             "*_curvefit_coefficients variable, which has a 'param' dimension)")
        return (ds.name or "curvefit_coefficients"), ds, None
    names = [str(k) for k in ds.data_vars if str(k).endswith("curvefit_coefficients")]
    if not names:
        raise ValueError("plot_map needs the Dataset returned by .nlsq.fit; this one has no "
                         f"*_curvefit_coefficients variable (it has {list(map(str, ds.data_vars))})")
    if var is not None:
        name = f"{var}_curvefit_coefficients"
        if name not in names:
            raise ValueError(f"no variable {name!r} in this result; var must be one of "
                             f"{[n.removesuffix('_curvefit_coefficients') for n in names]}")
    elif len(names) > 1:
        raise ValueError(f"this result holds fits of several variables; pass var= one of "
                         f"{[n.removesuffix('_curvefit_coefficients') for n in names]}")
    else:
        name = names[0]
    return name, ds[name], ds


def plot_map(ds, param, var=None, ax=None, *, error: bool = False, **kwargs):
    """Map of one fitted parameter over the kept (pixel) dimensions.

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        The result of ``ds.nlsq.fit`` (or its ``*_curvefit_coefficients``). Lazy
        results are computed for this parameter only.
    param : str
        A parameter name (a value of the ``param`` coordinate), or ``'cost'`` /
        ``'status'`` for the per-pixel cost and status.
    var : str, optional
        Which fitted variable, when the result holds several (``<var>_curvefit_*``).
    ax : matplotlib Axes, optional
        Default: a new figure.
    error : bool
        Map the standard error ``sqrt(pcov[param, param])`` instead of the value.
    **kwargs
        Passed to :meth:`xarray.DataArray.plot` (``cmap``, ``robust``, ``vmin``, ...).

    Returns
    -------
    The artist from :meth:`xarray.DataArray.plot` (an image for 2 kept dimensions, a
    line for 1); failed pixels (NaN coefficients) are left blank.
    """
    plt = _pyplot()
    name, coef, dataset = _coefficients(ds, var)
    prefix = name.removesuffix("curvefit_coefficients")
    params = [str(p) for p in np.asarray(coef["param"].values)] if "param" in coef.coords else []
    if param in ("cost", "status"):
        key = f"{prefix}curvefit_{param}"
        if dataset is None or key not in dataset:
            raise ValueError(f"{param!r} needs the Dataset returned by .nlsq.fit (with {key!r})")
        values, label = dataset[key], param
    elif param not in params:
        raise ValueError(f"unknown parameter {param!r}; choose one of {params} "
                         "(or 'cost', 'status')")
    elif error:
        key = f"{prefix}curvefit_covariance"
        if dataset is None or key not in dataset:
            raise ValueError(f"error=True needs the Dataset returned by .nlsq.fit (with {key!r})")
        values = np.sqrt(dataset[key].sel(cov_i=param, cov_j=param, drop=True))
        label = f"standard error of {param}"
    else:
        values, label = coef.sel(param=param, drop=True), param
    if values.ndim == 0:
        raise ValueError("this is a global fit (every dimension reduced): there is no map; "
                         f"{param} = {float(values.compute()):.6g}")
    if values.ndim > 2:
        extra = list(values.dims[:-2])
        raise ValueError(f"the map has {values.ndim} dimensions {list(values.dims)}; select "
                         f"down to two first, e.g. plot_map(ds.isel({extra[0]}=0), {param!r})")
    values = values.compute()
    values.name = label
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    artist = values.plot(ax=ax, **kwargs)
    ax.set_title(f"{prefix.removesuffix('_') or 'fit'}: {label}", fontsize="medium")
    return artist
