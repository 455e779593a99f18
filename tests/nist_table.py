"""NIST StRD accuracy table for ``nlsq_dask.fit``: problems x starts x reductions.

Run ``python tests/nist_table.py`` (``--defaults``: no tolerances given, as users run it;
``--scipy`` for a column with
``scipy.optimize.least_squares(method='trf', x_scale='jac')`` from the same start, and
problem names to restrict the table). Each cell is the minimum log relative error
(LRE, digits of agreement, capped at 15) of the parameters and of the standard
deviations against the certified values. ``tests/test_nist.py`` uses :func:`run`.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import nist
import numpy as np

TOL = 1e-15
MAX_NFEV = 10_000
REDUCTIONS = ("normal", "qr")


@dataclass
class Row:
    problem: str
    start: int  # 1 or 2, as NIST numbers them
    reduction: str
    lre_params: float
    lre_sd: float
    status: int
    nfev: int
    tier: str
    seconds: float
    warnings: tuple


@cache
def run(problem: str, start: int, reduction: str, defaults: bool = False) -> Row:
    """Fit one NIST problem from start 1 or 2 with tight tolerances, or with ``defaults``
    (no tolerances given: the adaptive ones); ``max_nfev`` is always the default."""
    import nlsq_dask

    pr = nist.load(problem)
    tol = {} if defaults else dict(ftol=TOL, xtol=TOL, gtol=TOL)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the default pass budget (1000 per parameter) suffices for every start, and the
        # tolerances are not static: tight and default fits share one compiled loop
        res = nlsq_dask.fit(pr.model, pr.x, pr.y, p0=pr.starts[start - 1], reduction=reduction,
                            **tol)
    seconds = time.perf_counter() - t0
    return Row(problem, start, reduction, float(nist.lre(res.popt, pr.certified).min()),
               float(nist.lre(res.perr, pr.certified_sd).min()), res.status, res.nfev,
               res.tier.value, seconds, tuple(f"{w.category.__name__}: {w.message}" for w in caught))


def scipy_lre(problem: str, start: int) -> tuple[float, float]:
    """Same fit with scipy's trf (x_scale='jac', exact JAX Jacobian); curve_fit's pcov."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import least_squares

    jax.config.update("jax_enable_x64", True)
    pr = nist.load(problem)
    x = jnp.asarray(pr.x)

    def res(p):
        return np.asarray(pr.model(x, *p)) - pr.y

    def jac(p):
        return np.asarray(jax.jacfwd(lambda q: pr.model(x, *q))(jnp.asarray(p)))

    ls = least_squares(res, pr.starts[start - 1], jac=jac, method="trf", x_scale="jac",
                       ftol=TOL, xtol=TOL, gtol=TOL, max_nfev=MAX_NFEV)
    _, s, vt = np.linalg.svd(ls.jac, full_matrices=False)
    keep = s > np.finfo(float).eps * max(ls.jac.shape) * s[0]
    pcov = (vt[keep].T / s[keep] ** 2) @ vt[keep] * (2 * ls.cost / (pr.y.size - ls.x.size))
    return (float(nist.lre(ls.x, pr.certified).min()),
            float(nist.lre(np.sqrt(np.diag(pcov)), pr.certified_sd).min()))


def table(problems=None, with_scipy: bool = False, defaults: bool = False,
          out=sys.stdout) -> list[Row]:
    problems = problems or nist.available()
    head = f"{'problem':<10} {'start':>5}"
    for red in REDUCTIONS:
        head += f" | {red + ' LRE p/sd':>16} {'nfev':>5}"
    if with_scipy:
        head += f" | {'scipy trf p/sd':>14}"
    print(head, file=out)
    print("-" * len(head), file=out)
    rows = []
    t0 = time.perf_counter()
    for name in problems:
        for start in (1, 2):
            line = f"{name:<10} {start:>5}"
            for red in REDUCTIONS:
                r = run(name, start, red, defaults)
                rows.append(r)
                flag = "" if r.lre_params >= 6 and r.lre_sd >= 4 else " *"
                line += f" | {r.lre_params:7.1f} /{r.lre_sd:5.1f}{flag:2} {r.nfev:5d}"
            if with_scipy:
                sp, ss = scipy_lre(name, start)
                line += f" | {sp:6.1f} /{ss:5.1f}"
            print(line, file=out, flush=True)
    worst = {red: min(r.lre_params for r in rows if r.reduction == red) for red in REDUCTIONS}
    worst_sd = {red: min(r.lre_sd for r in rows if r.reduction == red) for red in REDUCTIONS}
    print(f"\nmin LRE params: {worst}; min LRE sd: {worst_sd}; "
          f"{len(rows)} fits in {time.perf_counter() - t0:.1f} s "
          "(* = below 6 digits for parameters or 4 for standard deviations)", file=out)
    return rows


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    table(args or None, with_scipy="--scipy" in sys.argv, defaults="--defaults" in sys.argv)
