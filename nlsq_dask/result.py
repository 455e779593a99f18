"""The result of a fit: unpacks as ``popt, pcov`` like ``scipy.optimize.curve_fit``.

A :class:`FitResult` can be kept: :meth:`~FitResult.to_dict` / :meth:`~FitResult.from_dict`
(JSON), :meth:`~FitResult.to_dataset` / :meth:`~FitResult.from_dataset` (an
``xarray.Dataset`` for ``to_zarr`` / ``to_netcdf``) and :func:`load_result` (a path) round
trip to an equal result. :meth:`~FitResult.fit_report` is the report a scientist expects:
values to the precision their errors justify, χ², AIC, BIC, R² and correlations.
Nothing here imports JAX or xarray until a method needs it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .result_nlsq import NLSQResultAccess
from .report import loss_name, total_sum_of_squares
from .workflow import Selection, WorkflowConfig, WorkflowTier

#: what ``fit()`` attaches: references to the caller's model and data, never pickled,
#: copied by ``deepcopy`` or compared by ``==``
DATA_REFERENCES = ("_model", "_x", "_y", "_residuals")

@dataclass(eq=False)
class FitResult(NLSQResultAccess):
    """Everything a fit produced.

    ``popt, pcov = result``, ``result[0]`` and ``len(result) == 2`` work as with
    ``curve_fit``'s tuple. ``nfev`` counts the final LM's full-data passes (each trial
    point costs one pass that yields cost, gradient and ``JᵀJ``); ``nit`` counts accepted
    iterations; ``n_passes`` and ``equivalent_passes`` count every read of the data.
    ``chi2`` is ``Σ ρ(r²)`` of the σ-weighted residuals (the ordinary χ² for
    ``loss='linear'``). ``elapsed`` is the wall time of the whole ``fit()`` call, in
    seconds (compiling, every start and validation included).

    It also answers ``scipy.optimize.least_squares``' result fields at the solution:
    ``x``, ``cost``, ``fun``, ``jac``, ``grad``, ``optimality``, ``active_mask``,
    ``nfev``, ``status``, ``message``, ``success``. ``fun`` (the weighted residuals) and
    ``jac`` (their ``(N, p)`` Jacobian) are per point: computed when first asked, and
    dask arrays (nothing computed) when the data are dask arrays.

    Two results are equal (``==``) when every field is: arrays by value, NaN equal to
    NaN. The references to the caller's model and data that ``fit()`` attaches (for
    :meth:`plot`, ``fun``, ``jac`` and R²) take no part, and are neither pickled nor
    deep-copied. Results are mutable, so not hashable.
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
    #: parameters held fixed (``fit(..., fixed=...)``): ``{name: value}``; their ``pcov``
    #: rows and columns are 0 and ``dof`` does not count them
    fixed: dict[str, float] = field(default_factory=dict)
    #: every read of the data: ``nfev`` full-data passes plus the passes over subsets of
    #: partitions that came first (``extras['subsets']``) and, with multi-start, the
    #: shared passes of all starts
    n_passes: int = 0
    #: the same in full-data passes: a pass over a subset counts as its share of the points
    equivalent_passes: float = 0.0

    __hash__ = None        # mutable and compared by value, as a dataclass with eq

    def __eq__(self, other) -> bool:
        if not isinstance(other, FitResult):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __getstate__(self):
        # the references kept for plot() and fun/jac are the caller's data: never pickle them
        return {k: v for k, v in self.__dict__.items() if k not in DATA_REFERENCES}

    def __iter__(self):
        yield self.popt
        yield self.pcov

    def __getitem__(self, index):
        if isinstance(index, str):           # NLSQ's result is a dict: result["pcov"]
            return self.item(index)
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
        return self.n_points_used - self.n_free

    @property
    def n_free(self) -> int:
        """Parameters the fit estimated (those not held ``fixed``)."""
        return len(self.popt) - len(self.fixed)

    @property
    def chi2(self) -> float:
        return 2.0 * self.cost

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else float("inf")

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.param_names, self.popt.tolist()))

    # ------------------------------------------------------------------ statistics
    @property
    def correl(self) -> np.ndarray:
        """Correlation matrix of the parameters, ``pcov_ij / sqrt(pcov_ii pcov_jj)``.

        The diagonal is 1. Rows and columns of parameters whose variance is ``inf``
        (not determined by the data), zero or NaN are NaN: they have no correlation.
        """
        pcov = np.asarray(self.pcov, dtype=float)
        var = np.diag(pcov).copy()
        ok = np.isfinite(var) & (var > 0)
        s = np.sqrt(np.where(ok, var, 1.0))
        with np.errstate(invalid="ignore"):
            c = np.clip(pcov / np.outer(s, s), -1.0, 1.0)
        c[~ok, :] = np.nan
        c[:, ~ok] = np.nan
        c[np.diag_indices_from(c)] = np.where(ok, 1.0, np.nan)
        return c

    @property
    def aic(self) -> float:
        """Akaike information criterion, as lmfit's: ``n log(χ²/n) + 2k``.

        ``n`` is :attr:`n_points_used`, ``k`` the number of parameters and ``χ²`` is
        :attr:`chi2` (clipped below at ``1e-250 n``, as lmfit does, for an exact fit).
        """
        n, k = self.n_points_used, self.n_free
        return n * math.log(max(self.chi2, 1e-250 * n) / n) + 2 * k

    @property
    def bic(self) -> float:
        """Bayesian information criterion, as lmfit's: ``n log(χ²/n) + log(n) k``."""
        n, k = self.n_points_used, self.n_free
        return n * math.log(max(self.chi2, 1e-250 * n) / n) + math.log(n) * k

    @property
    def rsquared(self) -> float | None:
        """Coefficient of determination ``R² = 1 - χ² / Σ w (y - ȳ_w)²``.

        ``w = 1/σ²`` (1 without ``sigma``), ``ȳ_w = Σ w y / Σ w`` and the sums run over the
        points used in the fit; for a 2-D ``sigma`` (covariance ``C``) the whitened form
        ``(y - ȳ)ᵀ C⁻¹ (y - ȳ)`` with the generalised mean. Without ``sigma`` it is the
        ordinary R² (that of ``scipy.stats.linregress`` for a line).

        It needs the data, so it is available only for a result fitted in this process
        (``fit()`` keeps references to them; a loaded or unpickled result has none), and
        only for ``loss='linear'`` (a robust loss minimises ``Σρ``, not ``χ²``): otherwise
        None. Computed when first asked and then kept: on in-memory data at once, on dask
        data one extra pass over ``y`` (and ``sigma``, ``x`` for the finite mask).
        """
        return self._rsquared()[0]

    def _rsquared(self) -> tuple[float | None, str]:
        """``(R², '')``, or ``(None, why it is not available)``."""
        if "_r2" in self.__dict__:
            return self.__dict__["_r2"], ""
        loss = self.config.loss
        if callable(loss) or loss != "linear":
            return None, f"a robust loss ({loss_name(loss)}) minimises Σρ, not χ²"
        view = self.__dict__.get("_residuals")
        if view is None:
            return None, "needs the data: this result is not attached to them (e.g. loaded)"
        tss = total_sum_of_squares(view.inputs)
        if not tss > 0:
            return None, "the data y are constant"
        self.__dict__["_r2"] = 1.0 - self.chi2 / tss
        return self.__dict__["_r2"], ""

    # ------------------------------------------------------------------ reports
    def summary(self) -> str:
        """A short human-readable report: each value to the precision its error justifies.

        Returns
        -------
        str
            Convergence and message, ``name = value ± error`` per parameter, the tier,
            passes, iterations and wall time, the points used and χ².
        """
        from .report import summary

        return summary(self)


    def fit_report(self, min_correl: float = 0.1) -> str:
        """The full report, as lmfit's ``fit_report``.

        Per parameter its value, standard error, relative error (%) and initial value,
        the value rounded to the decimal place of the error's second significant digit
        (see :func:`~nlsq_dask.report.format_value_error`); the fit statistics (points, parameters, degrees
        of freedom, χ², reduced χ², AIC, BIC and R², see :attr:`aic`, :attr:`bic`,
        :attr:`rsquared`); the correlations larger than ``min_correl`` in magnitude, the
        largest first; the tier, passes, iterations and wall time.

        R² needs the data: for a result fitted in this process on dask data, asking for
        the report costs one extra pass over them (once; the value is then kept). It is
        left out, with the reason, for a result loaded from disk or a robust loss.

        Parameters
        ----------
        min_correl : float
            Smallest ``|correlation|`` listed (lmfit's default, 0.1).

        Returns
        -------
        str
        """
        from .report import fit_report

        return fit_report(self, min_correl)

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

    # ------------------------------------------------------------------ keeping results
    def to_dict(self) -> dict[str, Any]:
        """The result as a dict of JSON types (arrays as lists, enums as their values).

        Every field is there, so :meth:`from_dict` rebuilds an equal result, plus the
        derived ``perr``, ``chi2``, ``reduced_chi2``, ``dof`` and ``success`` for readers
        of the JSON. The ``extras`` are spread at the top level (``d["checkpoint"]``), as
        ``nlsq-dask fit``'s ``result.json`` has them; an extra whose name is a field's goes
        under ``d["extras"]`` instead.

        Non-finite numbers (an ``inf`` covariance of an undetermined parameter, a NaN
        ``optimality``) stay floats: ``json.dumps`` writes them as ``Infinity`` and
        ``NaN``, which Python's ``json.loads`` (and so :meth:`from_dict`) reads back, but
        strict JSON parsers refuse; :meth:`from_dict` also accepts them as the strings
        ``"inf"``, ``"-inf"`` and ``"nan"``.

        Returns
        -------
        dict
        """
        from .result_io import to_dict

        return to_dict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FitResult:
        """Rebuild a result from :meth:`to_dict`'s dict (or its JSON, read back).

        The derived keys (``perr``, ``chi2``, ``reduced_chi2``, ``dof``, ``success``) are
        ignored; keys that are neither fields nor derived are the ``extras``. Types are
        restored: numpy arrays, ``status`` as a :class:`nlsq_dask.solver.Status` (which
        imports JAX, here and not before), ``tier`` as a :class:`WorkflowTier`, ``config``
        as a :class:`WorkflowConfig` and ``selection`` as a :class:`Selection`.

        Two things cannot come back as they were: a callable loss is restored as its name
        (``config.loss`` is then a string such as ``'callable:rho'``, which describes the
        fit but cannot be fitted with again), and a selection that does not rebuild (e.g.
        written by another version) is kept as the plain dict.

        Parameters
        ----------
        d : mapping
            As :meth:`to_dict` returns it; ``nlsq-dask fit``'s ``result.json`` is one.

        Returns
        -------
        FitResult

        Raises
        ------
        ValueError
            If a field the result needs is missing, or a value is invalid.
        """
        from .result_io import from_dict

        return from_dict(cls, d)

    def to_dataset(self, var: str | None = None):
        """The result as an ``xarray.Dataset`` named as ``Dataset.curvefit`` names its output.

        Variables: ``curvefit_coefficients`` (dim ``param``, whose coordinate holds the
        parameter names), ``curvefit_covariance`` (``cov_i``, ``cov_j``),
        ``curvefit_status`` and ``curvefit_cost`` (0-d), as ``ds.nlsq.fit`` writes them,
        plus ``curvefit_stderr`` (derived), ``curvefit_p0``, ``curvefit_grad`` and
        ``curvefit_active_mask`` (``param``). The coefficients' attributes hold the rest,
        in types every writer stores (netCDF attributes cannot hold dicts, booleans or
        None): ``nlsq_tier``, ``nlsq_message``, ``nlsq_nfev``, ``nlsq_nit``,
        ``nlsq_n_points_used`` (a float beyond 2³¹−1, which netCDF3 cannot hold as an
        integer), ``nlsq_status``, ``nlsq_cost``, ``nlsq_elapsed``, ``nlsq_optimality``,
        ``nlsq_explanation`` (derived), and ``nlsq_config``, ``nlsq_selection``,
        ``nlsq_history``, ``nlsq_extras`` as JSON strings (non-finite numbers in them as
        ``NaN``/``Infinity``, which Python's ``json`` reads); ``nlsq_format`` names the
        format.

        ``ds.to_zarr(path)`` and ``ds.to_netcdf(path)`` (any engine, scipy's netCDF3
        included) store it; :meth:`from_dataset` and :func:`load_result` read it back.

        Parameters
        ----------
        var : str, optional
            Prefix the variable names with ``var_`` (``[var]_curvefit_coefficients``), as
            ``curvefit`` does for a Dataset's variables, so that the results of several
            fits can share one Dataset.

        Returns
        -------
        xarray.Dataset
        """
        from .result_io import to_dataset

        return to_dataset(self, var)

    @classmethod
    def from_dataset(cls, ds, var: str | None = None) -> FitResult:
        """Rebuild a result from :meth:`to_dataset`'s Dataset (or that Dataset read back).

        Parameters
        ----------
        ds : xarray.Dataset
        var : str, optional
            The prefix given to :meth:`to_dataset`; by default the Dataset's only
            ``*curvefit_coefficients`` variable is read.

        Returns
        -------
        FitResult

        Raises
        ------
        ValueError
            If the Dataset holds no result of :meth:`to_dataset` (e.g. a per-pixel
            ``ds.nlsq.fit`` output), or several and no ``var``.
        """
        from .result_io import from_dataset

        return from_dataset(cls, ds, var)


# ---------------------------------------------------------------------------- helpers


def _same(a, b) -> bool:
    """Deep equality of stored values: arrays and sequences by value (NaN equal to NaN,
    a list equal to the array of its values), mappings by key, everything else by ``==``."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and a.keys() == b.keys()
                and all(_same(a[k], b[k]) for k in a))
    seq = (list, tuple, np.ndarray)
    if isinstance(a, seq) or isinstance(b, seq):
        if not (isinstance(a, seq) and isinstance(b, seq)):
            return False
        try:
            arrays = np.asarray(a), np.asarray(b)
        except ValueError:                        # ragged
            arrays = None
        if arrays and all(x.dtype.kind in "biuf" for x in arrays):
            return arrays[0].shape == arrays[1].shape and np.array_equal(*arrays, equal_nan=True)
        a = a.tolist() if isinstance(a, np.ndarray) else a
        b = b.tolist() if isinstance(b, np.ndarray) else b
        if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
            return _same(a, b)                    # 0-d object arrays
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return bool(a == b) or (math.isnan(a) and math.isnan(b))
    try:
        return bool(a == b)
    except Exception:
        return False


