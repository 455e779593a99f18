"""In-memory (STANDARD tier) speed against scipy ``curve_fit`` (and NLSQ when installed).

Run: ``python benchmarks/in_memory.py [--sizes 1000000 10000000] [--repeats 3]``.
Prints warm wall times (best of ``--repeats`` after one compiling call), data
passes, and the ratio of each peer's time to ours.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from _common import best_time, exp_data, machine, print_table

import nlsq_dask

P0 = [2.5, 0.6, 0.2]


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def np_model(x, a, b, c):
    return a * np.exp(-b * x) + c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    from scipy.optimize import curve_fit

    try:
        import nlsq
    except ImportError:
        nlsq = None
    rows = []
    for n in args.sizes:
        x, y = exp_data(n)
        nlsq_dask.fit(model, x, y, p0=P0)  # compile
        t_ours, res = best_time(lambda: nlsq_dask.fit(model, x, y, p0=P0), args.repeats)
        rows.append([f"{n:,}", "nlsq_dask (standard)", f"{t_ours:.3f}", res.nfev, "1.00", "0"])
        t_sp, (popt, _, info, *_ ) = best_time(
            lambda: curve_fit(np_model, x, y, p0=P0, full_output=True), args.repeats)
        dev = np.max(np.abs(popt / res.popt - 1))
        rows.append([f"{n:,}", "scipy curve_fit (lm)", f"{t_sp:.3f}", info["nfev"],
                     f"{t_sp / t_ours:.2f}", f"{dev:.1e}"])
        if nlsq is not None:
            fit_nlsq = nlsq.CurveFit()
            fit_nlsq.curve_fit(model, x, y, p0=P0)
            t_nl, out = best_time(lambda: fit_nlsq.curve_fit(model, x, y, p0=P0), args.repeats)
            dev = np.max(np.abs(np.asarray(out[0]) / res.popt - 1))
            rows.append([f"{n:,}", f"NLSQ {nlsq.__version__}", f"{t_nl:.3f}", "-",
                         f"{t_nl / t_ours:.2f}", f"{dev:.1e}"])
    print_table(f"in-memory fit of a*exp(-b*x)+c, warm, best of {args.repeats} ({machine()})",
                ["points", "tool", "seconds", "passes/nfev", "time / ours", "max rel dpopt"], rows)
    if nlsq is None:
        print("(NLSQ not installed: pip install nlsq to add it to the table)")


if __name__ == "__main__":
    main()
