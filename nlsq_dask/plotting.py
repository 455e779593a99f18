"""Pictures of fits: data with the fitted curve, residuals, cost per iteration, parameter maps.

Needs matplotlib (``pip install "nlsq-dask[plot]"``); it is imported inside the
functions, so ``import nlsq_dask`` never imports it. Large data are never loaded:
at most ``max_points`` points are drawn, either an evenly strided subsample or the
means of ``max_points`` bins along ``x`` (one dask computation for each; with dask
data nothing is computed before the plot is asked for).

* :func:`plot_fit` — what :meth:`nlsq_dask.FitResult.plot` draws: three panels
  (data and model, residuals, cost per accepted iteration);
* :func:`plot_map` — a map of one fitted parameter (or its standard error, the
  cost or the status, drawn as categories) over the kept dimensions of an
  ``ds.nlsq.fit`` result.
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
    histograms weighted by x, y and y² (a second pass). Returns ``([x means], y means,
    counts, standard errors of the y means)`` of the bins that hold points.
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
                 da.histogram(x0d, bins=edges, weights=yd)[0],
                 da.histogram(x0d, bins=edges, weights=yd * yd)[0]]
        count, sx, sy, syy = _compute(*parts)
    else:
        x0n, yn = np.asarray(x0, float), np.asarray(y, float)
        ok = np.isfinite(x0n) & np.isfinite(yn)
        x0n, yn = x0n[ok], yn[ok]
        count, sx, sy, syy = (np.histogram(x0n, bins=edges, weights=w)[0]
                              for w in (None, x0n, yn, yn * yn))
    keep = count > 0
    n, mean = count[keep], sy[keep] / count[keep]
    # the spread within a bin, as its mean's standard error (0 for a bin of one point)
    var = np.maximum(syy[keep] - n * mean**2, 0.0) / np.maximum(n - 1, 1)
    return [sx[keep] / n], mean, n, np.sqrt(var / n)


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
    x, y : array_like, optional
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
        How large data are reduced. Bin means are drawn above the model, and the
        residual panel shows each with its standard error (the spread of y in the bin
        over the square root of its count).
    title : str, optional
        Figure title (default: the tier, the points and each parameter as
        ``value ± standard error``, the error to 2 significant digits).

    Returns
    -------
    matplotlib.figure.Figure
        With three axes: data and model, residuals (data − model), cost per accepted
        iteration with its final level dashed (log scale when it falls by a factor 3
        or more; the limits are labelled ticks around every point). With several
        inputs (``k > 1``) the first panel shows the data against the model's
        prediction instead of a curve.
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
    label, sem = "data", None
    if n > max_points and how == "bin" and inputs.n_inputs == 1:
        xs, yv, counts, sem = _bin(xs, yv, int(max_points))
        label = (f"mean of y in each of {len(yv):,} bins of x "
                 f"(~{int(np.median(counts)):,} points each)")
    elif n > max_points:
        xs, yv, step = _subsample(xs, yv, int(max_points))
        label = f"data, every {step:,}th of {n:,} points"
    *xs, yv = _compute(*xs, yv)

    spec = ModelSpec(model, tuple(result.param_names), inputs.x_form, len(xs))
    popt = np.asarray(result.popt, dtype=float)
    order = np.argsort(xs[0], kind="stable")
    xs_sorted = [np.asarray(xi, float)[order] for xi in xs]
    y_sorted = np.asarray(yv, float)[order]
    sem = None if sem is None else sem[order]
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
    if sem is not None:
        # bin means: drawn above the model (which is wide and translucent beneath them)
        style = dict(marker="o", ls="none", ms=2.5, mew=0, color="black", zorder=3)
        fit_style = dict(color="C3", lw=4, alpha=0.5, zorder=2)
    else:
        style = dict(marker="o", ls="none", ms=3 if small else 1.5,
                     alpha=0.8 if small else 0.4, color="0.35", rasterized=not small)
        fit_style = dict(color="C3", lw=2)
    xlabel = "x" if inputs.n_inputs == 1 else "x[0]"
    if inputs.n_inputs == 1:
        a_data.plot(xs_sorted[0], y_sorted, label=label, **style)
        a_data.plot(xs_sorted[0], fitted, label="fit", **fit_style)
        a_data.set_xlabel(xlabel)
        a_data.set_ylabel("y")
    else:
        a_data.plot(fitted, y_sorted, label=label, **style)
        lim = [float(np.nanmin(fitted)), float(np.nanmax(fitted))]
        a_data.plot(lim, lim, label="y = model", **fit_style)
        a_data.set_xlabel("model")
        a_data.set_ylabel("y")
    a_data.legend(loc="best", fontsize="small")
    if sem is not None:
        a_res.errorbar(xs_sorted[0], resid, yerr=sem, elinewidth=0.8, ecolor="0.55",
                       label="bin mean − model, ± its standard error", **style)
        # above the panel: inside, it would hide some of the points
        a_res.legend(loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.1,
                     frameon=False, fontsize="small")
    else:
        a_res.plot(xs_sorted[0], resid, **style)
    a_res.axhline(0.0, color="C3", lw=1, zorder=2.5)
    a_res.set_xlabel(xlabel)
    a_res.set_ylabel("y − model")

    hist = [h for h in (result.history or []) if "cost" in h]
    if hist:
        it = [int(h.get("iteration", i)) for i, h in enumerate(hist)]
        _cost_panel(a_cost, it, np.asarray([float(h["cost"]) for h in hist]))
    else:
        a_cost.text(0.5, 0.5, "no iteration history", ha="center", va="center",
                    transform=a_cost.transAxes)
    a_cost.set_xlabel("iteration")
    a_cost.set_ylabel("cost ½Σρ(r²)")
    if title is None:
        title = _title(result, popt)
    if ax is None:
        fig.suptitle(title, fontsize="medium")
    else:
        a_data.set_title(title, fontsize="medium")
    return fig


def _value_error(value: float, error: float) -> str:
    """``value ± error`` as :meth:`FitResult.summary` writes them (see
    :func:`nlsq_dask.report.format_value_error`); the value alone when the error is NaN
    or zero (it says nothing of the precision)."""
    from .report import format_value_error

    shown, err = format_value_error(value, error)
    return shown if err in ("nan", "0") else f"{shown} ± {err}"


def _title(result, popt) -> str:
    """``<tier> fit of <n> points`` over the parameters, ``name = value ± error``, in
    lines of at most ~70 characters."""
    try:
        perr = np.sqrt(np.diag(np.asarray(result.pcov, dtype=float)))
    except (TypeError, ValueError):
        perr = np.full(len(popt), np.nan)
    if perr.shape != popt.shape:
        perr = np.full(len(popt), np.nan)
    params = [f"{k} = {_value_error(v, e)}" for k, v, e in zip(result.param_names, popt, perr)]
    lines = [""]
    for p in params:
        if lines[-1] and len(lines[-1]) + len(p) > 70:
            lines.append("")
        lines[-1] += (", " if lines[-1] else "") + p
    tier = getattr(result.tier, "value", result.tier)
    return "\n".join([f"{tier} fit of {result.n_points_used:,} points", *lines])


def _cost_panel(ax, iterations, cost):
    """Cost per iteration with its final level marked; the y-limits are ticks, so that
    every point (the final cost too) lies within the labelled range."""
    from matplotlib import ticker

    ax.plot(iterations, cost, marker="o", color="C0", zorder=3)
    ax.axhline(cost[-1], color="0.45", lw=1, ls="--", zorder=2,
               label=f"final cost {cost[-1]:.6g}")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    lo, hi = float(np.min(cost)), float(np.max(cost))
    # a little beyond the outer ticks, so that a point on one is drawn whole
    if lo > 0 and hi / lo >= 3:
        ax.set_yscale("log")
        ticks = _log_ticks(lo, hi)
        ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(_log_label))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        pad = (ticks[-1] / ticks[0]) ** 0.04
        ax.set_ylim(ticks[0] / pad, ticks[-1] * pad)
    else:
        ticks = ticker.MaxNLocator(5).tick_values(lo, hi) if hi > lo else \
            ticker.MaxNLocator(5).tick_values(lo - (0.01 * abs(lo) or 1.0),
                                              hi + (0.01 * abs(hi) or 1.0))
        ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
        pad = 0.04 * (ticks[-1] - ticks[0])
        ax.set_ylim(ticks[0] - pad, ticks[-1] + pad)
    ax.legend(loc="best", fontsize="small")


def _log_ticks(lo: float, hi: float) -> np.ndarray:
    """Ticks for a log axis from one at or below ``lo`` to one at or above ``hi``: 1, 2,
    5 per decade over up to 2 decades, every decade up to 7, else every few decades."""
    first, last = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    span = np.log10(hi) - np.log10(lo)
    stride = 1 if span <= 7 else int(np.ceil(span / 6))
    powers = np.arange((first // stride) * stride, last + stride, stride, dtype=float)
    mantissas = (1.0, 2.0, 5.0) if span <= 2 else (1.0,)
    with np.errstate(over="ignore", under="ignore"):
        ladder = np.ravel(np.multiply.outer(10.0**powers, mantissas))
    ladder = ladder[np.isfinite(ladder) & (ladder > 0)]
    below, above = ladder <= lo * (1 + 1e-9), ladder >= hi * (1 - 1e-9)   # 10.0**k rounds
    if not (below.any() and above.any()):                  # at the ends of float64
        return np.array([lo, hi])
    return ladder[(ladder >= ladder[below].max()) & (ladder <= ladder[above].min())]


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _log_label(value: float, _pos=None) -> str:
    """1000, 2000, 0.05 as they are; 2×10⁶, 10⁻⁸ outside [0.001, 10⁵)."""
    if 1e-3 <= value < 1e5:
        return f"{value:g}"
    mantissa, power = (int(part) for part in f"{value:.0e}".split("e"))
    text = f"10{str(power).translate(_SUPERSCRIPT)}"
    return text if mantissa == 1 else f"{mantissa}×{text}"


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

    Notes
    -----
    The status is drawn as categories: one colour per code present (the same colour
    for a code in every map), and a colour bar with one tick per code, named as
    :class:`nlsq_dask.solver.Status` (``gtol``, ``ftol``, ``xtol``, ``ftol+xtol``,
    ``max passes``, ``not finite``: also a pixel without a usable point) with its pixel
    count. A pixel with no status (NaN, e.g. after ``reindex``) is drawn as a code below
    every status code, ``not fitted``. ``cmap`` picks the colours from a colormap instead.
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
    if param == "status":
        artist = _status_map(values, ax, **kwargs)
    else:
        artist = values.plot(ax=ax, **kwargs)
    ax.set_title(f"{prefix.removesuffix('_') or 'fit'}: {label}", fontsize="medium")
    return artist


#: short names and colours of the status codes, by :class:`nlsq_dask.solver.lm.Status`
#: member name: the same colour for a code in every map, failures warm, the converged cool
_STATUS_STYLE = {"NOT_FINITE": ("not finite", "#d62728"), "MAX_NFEV": ("max passes", "#ff7f0e"),
                 "GTOL": ("gtol", "#2ca02c"), "FTOL": ("ftol", "#1f77b4"),
                 "XTOL": ("xtol", "#9467bd"), "FTOL_XTOL": ("ftol+xtol", "#17becf"),
                 "CALLBACK": ("stopped by callback", "#8c564b")}
_NOT_FITTED = ("not fitted", "#d9d9d9")


def _status_styles() -> dict[int, tuple[str, str]]:
    """``{code: (short name, colour)}`` of every :class:`~nlsq_dask.solver.lm.Status`
    (-1 'not finite' is also a pixel without a usable point)."""
    from .solver.lm import Status        # here: it imports jax

    return {int(s): _STATUS_STYLE.get(s.name, (s.name.lower().replace("_", " "), "#7f7f7f"))
            for s in Status}


def _status_map(values, ax, *, cmap=None, add_colorbar=True, **kwargs):
    """The status as categories: one colour per code present, one labelled tick each
    (with its pixel count) on the colour bar; a 1-D status is drawn as points against
    labelled y ticks. A pixel without a status (NaN) is drawn as a code below all
    others, 'not fitted'."""
    from matplotlib import colors

    styles = _status_styles()
    raw = np.asarray(values.values, dtype=float)
    if np.isnan(raw).any():
        not_fitted = int(min(min(styles), np.nanmin(raw, initial=0))) - 1
        styles[not_fitted] = _NOT_FITTED
        values = values.copy(data=np.where(np.isnan(raw), not_fitted, raw))
    codes, counts = np.unique(values.values, return_counts=True)
    codes = codes.astype(int)
    labels = [f"{styles.get(c, (f'status {c}',))[0]} ({n:,})" for c, n in zip(codes, counts)]
    if values.ndim == 1:
        artist = values.plot(ax=ax, marker="o", ls="none", **kwargs)
        ax.set_yticks(codes, labels)
        ax.set_ylim(codes[0] - 0.5, codes[-1] + 0.5)
        return artist
    if cmap is None:
        palette = [styles[c][1] if c in styles else f"C{i}" for i, c in enumerate(codes)]
    else:
        from matplotlib import colormaps

        cmap = colormaps[cmap] if isinstance(cmap, str) else cmap
        palette = cmap(np.linspace(0, 1, len(codes)))
    # a bin per code; the colour bar draws the bins evenly, a tick at each bin's middle
    edges = np.concatenate([[codes[0] - 0.5], (codes[1:] + codes[:-1]) / 2, [codes[-1] + 0.5]])
    norm = colors.BoundaryNorm(edges, len(codes))
    artist = values.plot(ax=ax, cmap=colors.ListedColormap(palette), norm=norm,
                         add_colorbar=False, **kwargs)
    if add_colorbar:
        bar = ax.figure.colorbar(artist, ax=ax, ticks=(edges[1:] + edges[:-1]) / 2)
        bar.set_ticklabels(labels)
        bar.minorticks_off()
        bar.ax.tick_params(length=0)
        bar.set_label("status (pixels)")
    return artist
