"""The result of a fit: unpacks as ``popt, pcov`` like ``scipy.optimize.curve_fit``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .workflow import Selection, WorkflowConfig, WorkflowTier


@dataclass
class FitResult:
    """Everything a fit produced.

    ``popt, pcov = result``, ``result[0]`` and ``len(result) == 2`` work as with
    ``curve_fit``'s tuple. ``nfev`` counts data passes (each trial point costs one pass
    that yields cost, gradient and ``JᵀJ``); ``nit`` counts accepted iterations.
    ``chi2`` is ``Σ ρ(r²)`` of the σ-weighted residuals (the ordinary χ² for
    ``loss='linear'``). ``elapsed`` is the wall time of the whole ``fit()`` call, in
    seconds (compiling, every start and validation included).

    It also answers ``scipy.optimize.least_squares``' result fields at the solution:
    ``x``, ``cost``, ``fun``, ``jac``, ``grad``, ``optimality``, ``active_mask``,
    ``nfev``, ``status``, ``message``, ``success``. ``fun`` (the weighted residuals) and
    ``jac`` (their ``(N, p)`` Jacobian) are per point: computed when first asked, and
    dask arrays (nothing computed) when the data are dask arrays.
    """

    popt: np.ndarray
    pcov: np.ndarray
    param_names: tuple[str, ...]
    cost: float
    n_points_used: int
    nfev: int
    nit: int
    status: int            # a nlsq_dask.solver.Status (an IntEnum of scipy's values)
    message: str
    tier: WorkflowTier
    config: WorkflowConfig
    selection: Selection | None = None
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)
    #: gradient of the cost at ``popt`` (``least_squares``' ``grad``: ``Jᵀ (ρ'·r)``)
    grad: np.ndarray | None = None
    #: first-order optimality: the scaled gradient norm compared with ``gtol``
    optimality: float = float("nan")
    #: per parameter: -1 at its lower bound, 1 at its upper bound, 0 free (as scipy)
    active_mask: np.ndarray | None = None
    #: the start of the fit (``p0``, or scipy's default, moved strictly inside the bounds);
    #: of a multi-start fit, the ``p0`` the starts were drawn around
    p0: np.ndarray | None = None

    def __getstate__(self):
        # the references kept for plot() and fun/jac are the caller's data: never pickle them
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_model", "_x", "_y", "_residuals")}

    def __iter__(self):
        yield self.popt
        yield self.pcov

    def __getitem__(self, index):
        return (self.popt, self.pcov)[index]

    def __len__(self) -> int:
        return 2

    @property
    def x(self) -> np.ndarray:
        """The solution (``least_squares``' name for ``popt``)."""
        return self.popt

    @property
    def fun(self):
        """Weighted residuals ``(model(x) - y) / sigma`` at ``popt``, per point (whitened by
        the Cholesky factor for a 2-D ``sigma``); a dask array for dask data."""
        return self._per_point("fun")

    @property
    def jac(self):
        """``(N, p)`` Jacobian of :attr:`fun` at ``popt``, rescaled for a robust loss as
        ``least_squares``' (``JᵀJ`` is the Gauss–Newton Hessian of the cost); a dask array
        for dask data."""
        return self._per_point("jac")

    def _per_point(self, what: str):
        view = self.__dict__.get("_residuals")
        if view is None:
            raise AttributeError(f"{what} is not available: this result is not attached to the "
                                 "data it was fitted to (e.g. it was unpickled)")
        return view.residuals() if what == "fun" else view.jacobian()

    @property
    def success(self) -> bool:
        return self.status > 0

    @property
    def perr(self) -> np.ndarray:
        return np.sqrt(np.diag(self.pcov))

    @property
    def dof(self) -> int:
        return self.n_points_used - len(self.popt)

    @property
    def chi2(self) -> float:
        return 2.0 * self.cost

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else float("inf")

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.param_names, self.popt.tolist()))

    def summary(self) -> str:
        """A short human-readable report."""
        width = max(len(n) for n in self.param_names)
        rows = [f"  {n:<{width}} = {v: .10g} ± {e:.3g}"
                for n, v, e in zip(self.param_names, self.popt, self.perr)]
        return "\n".join([
            f"fit {'converged' if self.success else 'did NOT converge'}: {self.message}",
            *rows,
            f"  tier {self.tier.value}; {self.nfev} passes, {self.nit} iterations, "
            f"{self.elapsed:.3f} s",
            f"  points used {self.n_points_used:,}; chi2 {self.chi2:.6g}; "
            f"reduced chi2 {self.reduced_chi2:.6g}",
        ])

    def __repr__(self) -> str:
        return f"FitResult(\n{self.summary()}\n)"

    def plot(self, x=None, y=None, *, model=None, ax=None, max_points: int = 5000,
             how: str = "subsample", title: str | None = None):
        """Draw the data with the fitted model, the residuals and the cost per iteration.

        Needs matplotlib (``pip install "nlsq-dask[plot]"``). Large data are reduced to
        at most ``max_points`` points (a strided subsample, or bin means with
        ``how='bin'``); with dask data only those are computed.

        Parameters
        ----------
        x, y : array_like, optional
            Data to draw (default: the data the fit was called with).
        model : callable, optional
            Default: the model the fit was called with.
        ax : sequence of 3 matplotlib Axes, optional
            Where to draw (data, residuals, cost); default: a new figure.
        max_points : int
            Most points drawn.
        how : {'subsample', 'bin'}
            How large data are reduced.
        title : str, optional
            Figure title (default: tier, points and parameters).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from .plotting import plot_fit

        return plot_fit(self, x, y, model=model, ax=ax, max_points=max_points, how=how,
                        title=title)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (arrays as lists; no pickles)."""
        return {
            "popt": self.popt.tolist(), "pcov": self.pcov.tolist(), "perr": self.perr.tolist(),
            "param_names": list(self.param_names), "cost": self.cost, "chi2": self.chi2,
            "reduced_chi2": self.reduced_chi2, "dof": self.dof,
            "n_points_used": self.n_points_used, "nfev": self.nfev, "nit": self.nit,
            "status": self.status, "message": self.message, "success": self.success,
            "tier": self.tier.value, "config": self.config.to_dict(),
            "selection": self.selection.to_dict() if self.selection else None,
            "history": self.history, "elapsed": self.elapsed,
            **{k: v for k, v in self.extras.items()},
        }
