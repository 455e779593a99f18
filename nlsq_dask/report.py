"""Reports of a fit: :func:`summary` and :func:`fit_report` (lmfit's layout), each value
to the precision its error justifies (:func:`format_value_error`), and the sums R² needs."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def summary(result) -> str:
    """:meth:`~nlsq_dask.result.FitResult.summary` (see there)."""
    width = max(len(n) for n in result.param_names)
    pairs = [format_value_error(v, e) for v, e in zip(result.popt, result.perr)]
    values = _align_decimal([v for v, _ in pairs])
    rows = [f"  {n:<{width}} = {v} ± {e}"
            for n, v, (_, e) in zip(result.param_names, values, pairs)]
    return "\n".join([
        f"fit {'converged' if result.success else 'did NOT converge'}: {result.message}",
        *rows,
        f"  {run_line(result)}",
        f"  points used {result.n_points_used:,}; chi2 {result.chi2:.6g}; "
        f"reduced chi2 {result.reduced_chi2:.6g}",
    ])


def run_line(result) -> str:
    passes = f"{result.nfev} passes"
    subset = result.n_passes - result.nfev
    if subset > 0:       # passes over subsets of partitions (or shared by several starts)
        what = "on subsets" if "subsets" in result.extras else "shared by the starts"
        passes = (f"{result.nfev} full passes + {subset} {what} "
                  f"({result.equivalent_passes:.2f} full-pass equivalents)")
    return (f"tier {result.tier.value}; {passes}, {result.nit} iterations, "
            f"{format_seconds(result.elapsed)}")


def fit_report(result, min_correl: float = 0.1) -> str:
    """:meth:`~nlsq_dask.result.FitResult.fit_report` (see there)."""
    names, perr = result.param_names, result.perr
    p0 = [None] * len(names) if result.p0 is None else list(result.p0)
    pairs = [format_value_error(v, e) for v, e in zip(result.popt, perr)]
    rel = [f"{_significant(100 * abs(e / v))}%" if v != 0 and math.isfinite(e) else "n/a"
           for v, e in zip(result.popt, perr)]
    for i, name in enumerate(names):         # held fixed: not estimated
        if name in result.fixed:
            pairs[i], rel[i] = (f"{result.popt[i]:.6g}", "fixed"), ""
    init = ["n/a" if v0 is None else f"{v0:.6g}" for v0 in p0]
    columns = [list(names), _align_decimal([v for v, _ in pairs]),
               _align_decimal([e for _, e in pairs]), rel, _align_decimal(init)]
    table = [("name", "value", "std error", "rel. error", "initial"), *zip(*columns)]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = [f"fit {'converged' if result.success else 'did NOT converge'}: {result.message}",
             "parameters:"]
    lines += ["  " + "  ".join([row[0].ljust(widths[0])]
                               + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()
              for row in table]
    r2, why = result._rsquared()
    stats = [("points", f"{result.n_points_used:,}"),
             ("parameters", f"{result.n_free}" + (f" (+{len(result.fixed)} fixed)"
                                                 if result.fixed else "")),
             ("degrees of freedom", f"{result.dof:,}"), ("chi-square", f"{result.chi2:.6g}"),
             ("reduced chi-square", f"{result.reduced_chi2:.6g}"),
             ("AIC", f"{result.aic:.6g}"), ("BIC", f"{result.bic:.6g}"),
             ("R-squared", f"{r2:.6g}" if r2 is not None else f"n/a ({why})")]
    lines.append("statistics:")
    lines += [f"  {label:<19} {value}" for label, value in stats]
    loss = result.config.loss
    if callable(loss) or loss != "linear":
        lines.append(f"  (loss {loss_name(loss)}: chi-square is Σρ(r²) of the weighted "
                     "residuals, and AIC/BIC use it)")
    c, pairs = result.correl, []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if abs(c[i, j]) > min_correl:
                pairs.append((abs(c[i, j]), f"C({names[i]}, {names[j]}) = {c[i, j]:+.3f}"))
    lines.append(f"correlations (|C| > {min_correl:g}):" if pairs else
                 f"correlations: none with |C| > {min_correl:g}")
    lines += [f"  {text}" for _, text in sorted(pairs, key=lambda t: -t[0])]
    lines.append(run_line(result))
    ms = result.extras.get("multistart")
    if isinstance(ms, Mapping) and ms.get("starts") is not None:
        lines[-1] += f"; best of {len(ms['starts'])} starts ({ms.get('method', 'multi-start')})"
    return "\n".join(lines)


def format_value_error(value: float, error: float, digits: int = 2) -> tuple[str, str]:
    """``(value, error)`` as strings, the value to the precision its error justifies.

    The error is rounded to ``digits`` significant digits and the value to the same
    decimal place (the Particle Data Group's and lmfit's practice): ``(1.23456,
    0.012345)`` gives ``('1.235', '0.012')``, ``(123456.7, 1234)`` ``('123500', '1200')``.
    Numbers of magnitude below ``1e-5`` or from ``1e6`` up are written in exponent form
    (``('1.235e-08', '1.2e-10')``). An error that is zero, ``inf`` or NaN says nothing of
    the precision: the value is then given to 6 significant digits.

    Parameters
    ----------
    value, error : float
    digits : int
        Significant digits of the error.

    Returns
    -------
    tuple of str
    """
    value, error = float(value), float(error)
    if not (math.isfinite(error) and error > 0 and math.isfinite(value)):
        return f"{value:.6g}", "0" if error == 0 else f"{error:g}"
    place = math.floor(math.log10(error)) - digits + 1       # exponent of the last digit shown
    if round(error / 10.0**place) >= 10**digits:             # 0.0996 -> 0.10, not 0.100
        place += 1
    top = math.floor(math.log10(max(abs(value), error)))
    if -5 <= top < 6:
        decimals = max(-place, 0)
        if place > 0:
            value, error = round(value, -place), round(error, -place)
        return _unsigned_zero(f"{value:.{decimals}f}"), f"{error:.{decimals}f}"
    exp = top
    mantissa = round(value / 10.0**exp, exp - place)
    if abs(mantissa) >= 10:
        exp += 1
    return (_unsigned_zero(f"{value / 10.0**exp:.{exp - place}f}") + f"e{exp:+03d}",
            f"{error:.{digits - 1}e}")


def format_seconds(seconds: float) -> str:
    """A duration as people write it: ``'850 µs'``, ``'35 ms'``, ``'1.2 s'``, ``'2 min 5 s'``."""
    t = float(seconds)
    if not math.isfinite(t) or t < 0:
        return f"{t} s"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.{1 if t < 0.01 else 0}f} ms"
    if t < 60:
        return f"{t:.{1 if t < 10 else 0}f} s"
    if t < 3600:
        m, s = divmod(round(t), 60)
        return f"{m} min {s} s"
    h, m = divmod(round(t / 60), 60)
    return f"{h} h {m:02d} min"


def _unsigned_zero(text: str) -> str:
    """``'-0.00'`` -> ``'0.00'``: a value rounded to zero has no sign."""
    return text[1:] if text.startswith("-") and not text.strip("-0.e+") else text


def _significant(x: float, digits: int = 2) -> str:
    """``x >= 0`` with ``digits`` significant digits, in fixed notation."""
    if not (x > 0 and math.isfinite(x)):
        return f"{x:g}"
    top = math.floor(math.log10(x))
    if round(x, digits - 1 - top) >= 10.0 ** (top + 1):     # 0.9996 -> 1.0, not 1.00
        top += 1
    return f"{x:.{max(digits - 1 - top, 0)}f}"


def _align_decimal(column: list[str]) -> list[str]:
    """The strings padded so that their decimal points line up."""
    parts = [s.partition(".") for s in column]
    left = max(len(a) for a, _, _ in parts)
    right = max(len(b + c) for _, b, c in parts)
    return [(a.rjust(left) + b + c).ljust(left + right) for a, b, c in parts]


def loss_name(loss) -> str:
    return repr(getattr(loss, "__name__", "callable") if callable(loss) else loss)


def total_sum_of_squares(inputs) -> float:
    """``Σ w (y - ȳ_w)²`` over the usable points of a fit's prepared inputs (w = 1/σ²);
    whitened by the Cholesky factor of a 2-D ``sigma``. Dask data: one pass."""
    y, sigma = inputs.y, inputs.sigma
    if inputs.cov_factor is not None:
        z, u = np.linalg.solve(inputs.cov_factor, np.column_stack([y, np.ones_like(y)])).T
        return float(np.sum((z - (u @ z) / (u @ u) * u) ** 2))
    if sigma is not None and np.ndim(sigma) == 0:
        sigma = None                  # the same σ everywhere: it cancels from R²
    if not inputs.lazy:
        w = np.ones_like(y, dtype=float) if sigma is None else 1.0 / np.square(sigma)
        return float(np.sum(w * (y - np.sum(w * y) / np.sum(w)) ** 2))
    import dask.array as da

    arrays = [y] + ([] if sigma is None else [sigma]) + list(inputs.xs)
    chunks = next(a.chunks[0] for a in arrays if hasattr(a, "dask"))
    arrays = [a.rechunk((chunks,)) if hasattr(a, "dask") else
              da.from_array(np.asarray(a), chunks=(chunks,)) for a in arrays]
    parts = da.map_blocks(_block_moments, *arrays, has_sigma=sigma is not None, new_axis=1,
                          chunks=((1,) * len(chunks), (3,)), dtype=float).compute()
    w, mean, m2 = parts.T
    total = w.sum()
    if not total > 0:
        return float("nan")
    # Chan et al.'s combination of per-block weighted means and sums of squares
    return float(m2.sum() + np.sum(w * (mean - np.sum(w * mean) / total) ** 2))


def _block_moments(y, *rest, has_sigma: bool):
    """``[[Σw, ȳ_w, Σw(y-ȳ_w)²]]`` of one block's finite points."""
    y = np.asarray(y, float)
    sigma = np.asarray(rest[0], float) if has_sigma else None
    ok = np.isfinite(y)
    for a in rest:
        ok &= np.isfinite(np.asarray(a, float))
    w = np.where(ok, 1.0, 0.0) if sigma is None else np.where(ok, 1.0 / np.square(
        np.where(ok, sigma, 1.0)), 0.0)
    y = np.where(ok, y, 0.0)
    total = w.sum()
    mean = (w @ y) / total if total > 0 else 0.0
    return np.array([[total, mean, w @ (y - mean) ** 2]])

