"""The accessors of NLSQ's result (``CurveFitResult``, a dict) on :class:`FitResult`.

NLSQ's ``fit`` returns an ``OptimizeResult`` dict subclass: code written for it reads
``result.get("pcov")``, ``result["x"]``, ``result.xdata``, ``result.multistart_diagnostics``
and its goodness-of-fit properties (``r_squared``, ``adj_r_squared``, ``rmse``, ``mae``,
``confidence_intervals``). :class:`NLSQResultAccess` answers them from a
:class:`~nlsq_dask.result.FitResult`, with NLSQ v0.5.3's names and definitions.
"""

from __future__ import annotations

import warnings

import numpy as np

#: the keys ``keys()`` lists (those of NLSQ's ``OptimizeResult`` that a fit here has)
RESULT_KEYS = ("x", "popt", "pcov", "perr", "success", "status", "message", "cost", "fun",
               "jac", "grad", "optimality", "active_mask", "nfev", "nit", "xdata", "ydata",
               "model", "multistart_diagnostics")


class NLSQResultAccess:
    """Dict-style and NLSQ-named access to a fit's result (mixed into ``FitResult``)."""

    def keys(self) -> list[str]:
        """The keys :meth:`get` and ``result[key]`` answer (NLSQ's result is a dict)."""
        return list(RESULT_KEYS)

    def get(self, key: str, default=None):
        """``result[key]``, or ``default`` where the result has no such value (as
        ``dict.get``: e.g. ``fun`` of a result detached from its data)."""
        try:
            return self.item(key)
        except (KeyError, AttributeError):
            return default

    def item(self, key: str):
        """The value NLSQ's result holds under ``key`` (``result["x"]`` calls this)."""
        if not isinstance(key, str) or key not in RESULT_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    @property
    def xdata(self):
        """The independent variable the fit was called with (None when detached)."""
        return self.__dict__.get("_x")

    @property
    def ydata(self):
        """The observations the fit was called with (None when detached)."""
        return self.__dict__.get("_y")

    @property
    def model(self):
        """The model function the fit was called with (None when detached)."""
        return self.__dict__.get("_model")

    @property
    def multistart_diagnostics(self) -> dict:
        """NLSQ's multi-start diagnostics: ``n_starts_configured``, ``sampler``,
        ``center_on_p0``, ``scale_factor``, ``bypassed`` (True for a single start),
        ``n_starts_evaluated``, ``n_starts_successful``, ``best_loss`` and ``all_losses``
        (the finite final costs, ``½Σρ``, of the starts; for starts screened on a subset,
        their subset cost), plus this package's ``method`` and ``data_passes``."""
        c = self.config
        report = self.extras.get("multistart")
        diag = {"n_starts_configured": int(c.n_starts) if c.enable_multistart else 0,
                "sampler": c.sampler, "center_on_p0": bool(c.center_on_p0),
                "scale_factor": float(c.scale_factor), "bounds_inferred": False,
                "p0_estimated": False, "bypassed": report is None}
        if report is None:
            diag["n_starts_evaluated"] = 0
            return diag
        starts = report.get("starts", [])
        losses = [s.get("cost", s.get("subset_cost")) for s in starts]
        diag.update(n_starts_evaluated=len(starts),
                    n_starts_successful=sum(1 for s in starts if s.get("status", 0) > 0),
                    best_loss=float(self.cost),
                    all_losses=sorted(float(v) for v in losses
                                      if v is not None and np.isfinite(v)),
                    method=report.get("method"), data_passes=report.get("data_passes"))
        return diag

    @property
    def r_squared(self) -> float:
        """NLSQ's name for :attr:`rsquared` (NaN where it is not available)."""
        r2 = self.rsquared
        return float("nan") if r2 is None else float(r2)

    @property
    def adj_r_squared(self) -> float:
        """``1 - (1 - R²)(n - 1)/(n - p - 1)`` (NLSQ's definition; NaN without R² or
        with too few points)."""
        n, p = self.n_points_used, self.n_free
        if n - p - 1 <= 0:
            warnings.warn("Not enough degrees of freedom for adjusted R².", stacklevel=2)
            return float("nan")
        return 1.0 - (1.0 - self.r_squared) * (n - 1) / (n - p - 1)

    @property
    def rmse(self) -> float:
        """Root mean square of the (σ-weighted) residuals: ``sqrt(χ²/n)``."""
        return float(np.sqrt(self.chi2 / self.n_points_used))

    @property
    def mae(self) -> float:
        """Mean absolute (σ-weighted) residual; needs the data (one pass over dask data)."""
        fun = self.fun
        value = np.nanmean(np.abs(fun))
        return float(value.compute() if hasattr(value, "compute") else value)

    def confidence_intervals(self, alpha: float = 0.95) -> np.ndarray:
        """``(p, 2)`` intervals ``popt ∓ t·perr`` at confidence ``alpha`` with Student's
        t on ``max(n - p, 1)`` degrees of freedom (NLSQ's definition)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be a confidence level in (0, 1); got {alpha!r}")
        from scipy import stats

        t = stats.t.ppf((1 + alpha) / 2, max(self.dof, 1))
        return np.column_stack([self.popt - t * self.perr, self.popt + t * self.perr])


_MISSING = object()
