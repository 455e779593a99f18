"""Starting points for multi-start fits, drawn with ``scipy.stats.qmc``.

Finite bounds: the box ``[lb, ub]`` (or, with ``center_on_p0``, the box of half
width ``scale_factor·(ub - lb)/2`` around ``p0``, clipped to the bounds).
Unbounded parameters: ``p0 ± scale_factor·max(|p0|, 1)``. With ``center_on_p0``
the first start is ``p0`` itself, so a multi-start never does worse than one start.
"""

from __future__ import annotations

import numpy as np

SAMPLERS = ("lhs", "sobol", "halton")


def unit_samples(n: int, d: int, sampler: str, seed: int) -> np.ndarray:
    """``n`` low-discrepancy points in ``[0, 1)^d``."""
    from scipy.stats import qmc

    if sampler == "lhs":
        engine = qmc.LatinHypercube(d=d, seed=seed)
    elif sampler == "sobol":
        engine = qmc.Sobol(d=d, scramble=True, seed=seed)
    elif sampler == "halton":
        engine = qmc.Halton(d=d, scramble=True, seed=seed)
    else:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {sampler!r}")
    if sampler == "sobol":  # Sobol' is balanced for powers of two: draw those, keep n
        return engine.random_base2(int(np.ceil(np.log2(max(n, 1)))))[:n]
    return engine.random(n)


def draw_starts(p0, lb, ub, n_starts: int, *, sampler: str = "lhs", center_on_p0: bool = True,
                scale_factor: float = 1.0, seed: int = 0) -> np.ndarray:
    """``(n_starts, p)`` starting points strictly inside the bounds."""
    p0, lb, ub = (np.asarray(a, dtype=float) for a in (p0, lb, ub))
    finite = np.isfinite(lb) & np.isfinite(ub)
    lb_f, ub_f = np.where(finite, lb, 0.0), np.where(finite, ub, 0.0)
    half = np.where(finite, scale_factor * (ub_f - lb_f) / 2, scale_factor * np.maximum(np.abs(p0), 1.0))
    centre = p0 if center_on_p0 else np.where(finite, (lb_f + ub_f) / 2, p0)
    lo = np.maximum(centre - half, lb)
    hi = np.minimum(centre + half, ub)
    u = unit_samples(n_starts, p0.size, sampler, seed)
    starts = lo + u * (hi - lo)
    if center_on_p0:
        starts[0] = p0
    # strictly inside, as the trust-region reflective method requires
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    return np.clip(starts, lb + 1e-10 * span, ub - 1e-10 * span)
