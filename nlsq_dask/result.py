"""The result of a fit: unpacks as ``popt, pcov`` like ``scipy.optimize.curve_fit``.

A :class:`FitResult` can be kept: :meth:`~FitResult.to_dict` / :meth:`~FitResult.from_dict`
(JSON), :meth:`~FitResult.to_dataset` / :meth:`~FitResult.from_dataset` (an
``xarray.Dataset`` for ``to_zarr`` / ``to_netcdf``) and :func:`load_result` (a path) round
trip to an equal result. :meth:`~FitResult.fit_report` is the report a scientist expects:
values to the precision their errors justify, χ², AIC, BIC, R² and correlations.
Nothing here imports JAX or xarray until a method needs it.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .job_output import jsonable
from .result_nlsq import NLSQResultAccess
from .workflow import Selection, WorkflowConfig, WorkflowTier, parse_enum

#: what ``fit()`` attaches: references to the caller's model and data, never pickled,
#: copied by ``deepcopy`` or compared by ``==``
DATA_REFERENCES = ("_model", "_x", "_y", "_residuals")
#: keys :meth:`FitResult.to_dict` adds that are computed from the fields
DERIVED_KEYS = ("perr", "chi2", "reduced_chi2", "dof", "success")
#: the format of :meth:`FitResult.to_dataset` (the coefficients' ``nlsq_format`` attribute)
DATASET_FORMAT = "nlsq_dask.FitResult/1"
_REQUIRED = ("popt", "pcov", "param_names", "cost", "n_points_used", "nfev", "nit", "status",
             "message", "tier", "config")
_INT32_MAX = 2**31 - 1        # netCDF3 (scipy's writer) holds no larger integer attribute


@dataclass(eq=False)
class FitResult(NLSQResultAccess):
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
            return None, f"a robust loss ({_loss_name(loss)}) minimises Σρ, not χ²"
        view = self.__dict__.get("_residuals")
        if view is None:
            return None, "needs the data: this result is not attached to them (e.g. loaded)"
        tss = _total_sum_of_squares(view.inputs)
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
        width = max(len(n) for n in self.param_names)
        pairs = [format_value_error(v, e) for v, e in zip(self.popt, self.perr)]
        values = _align_decimal([v for v, _ in pairs])
        rows = [f"  {n:<{width}} = {v} ± {e}"
                for n, v, (_, e) in zip(self.param_names, values, pairs)]
        return "\n".join([
            f"fit {'converged' if self.success else 'did NOT converge'}: {self.message}",
            *rows,
            f"  {self._run_line()}",
            f"  points used {self.n_points_used:,}; chi2 {self.chi2:.6g}; "
            f"reduced chi2 {self.reduced_chi2:.6g}",
        ])

    def _run_line(self) -> str:
        return (f"tier {self.tier.value}; {self.nfev} passes, {self.nit} iterations, "
                f"{format_seconds(self.elapsed)}")

    def fit_report(self, min_correl: float = 0.1) -> str:
        """The full report, as lmfit's ``fit_report``.

        Per parameter its value, standard error, relative error (%) and initial value,
        the value rounded to the decimal place of the error's second significant digit
        (see :func:`format_value_error`); the fit statistics (points, parameters, degrees
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
        names, perr = self.param_names, self.perr
        p0 = [None] * len(names) if self.p0 is None else list(self.p0)
        pairs = [format_value_error(v, e) for v, e in zip(self.popt, perr)]
        rel = [f"{_significant(100 * abs(e / v))}%" if v != 0 and math.isfinite(e) else "n/a"
               for v, e in zip(self.popt, perr)]
        for i, name in enumerate(names):         # held fixed: not estimated
            if name in self.fixed:
                pairs[i], rel[i] = (f"{self.popt[i]:.6g}", "fixed"), ""
        init = ["n/a" if v0 is None else f"{v0:.6g}" for v0 in p0]
        columns = [list(names), _align_decimal([v for v, _ in pairs]),
                   _align_decimal([e for _, e in pairs]), rel, _align_decimal(init)]
        table = [("name", "value", "std error", "rel. error", "initial"), *zip(*columns)]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        lines = [f"fit {'converged' if self.success else 'did NOT converge'}: {self.message}",
                 "parameters:"]
        lines += ["  " + "  ".join([row[0].ljust(widths[0])]
                                   + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip()
                  for row in table]
        r2, why = self._rsquared()
        stats = [("points", f"{self.n_points_used:,}"),
                 ("parameters", f"{self.n_free}" + (f" (+{len(self.fixed)} fixed)"
                                                     if self.fixed else "")),
                 ("degrees of freedom", f"{self.dof:,}"), ("chi-square", f"{self.chi2:.6g}"),
                 ("reduced chi-square", f"{self.reduced_chi2:.6g}"),
                 ("AIC", f"{self.aic:.6g}"), ("BIC", f"{self.bic:.6g}"),
                 ("R-squared", f"{r2:.6g}" if r2 is not None else f"n/a ({why})")]
        lines.append("statistics:")
        lines += [f"  {label:<19} {value}" for label, value in stats]
        loss = self.config.loss
        if callable(loss) or loss != "linear":
            lines.append(f"  (loss {_loss_name(loss)}: chi-square is Σρ(r²) of the weighted "
                         "residuals, and AIC/BIC use it)")
        c, pairs = self.correl, []
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                if abs(c[i, j]) > min_correl:
                    pairs.append((abs(c[i, j]), f"C({names[i]}, {names[j]}) = {c[i, j]:+.3f}"))
        lines.append(f"correlations (|C| > {min_correl:g}):" if pairs else
                     f"correlations: none with |C| > {min_correl:g}")
        lines += [f"  {text}" for _, text in sorted(pairs, key=lambda t: -t[0])]
        lines.append(self._run_line())
        ms = self.extras.get("multistart")
        if isinstance(ms, Mapping) and ms.get("starts") is not None:
            lines[-1] += f"; best of {len(ms['starts'])} starts ({ms.get('method', 'multi-start')})"
        return "\n".join(lines)

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
        taken = {f.name for f in fields(self)} | set(DERIVED_KEYS)
        extras = jsonable(self.extras)
        d = {
            "popt": self.popt, "pcov": self.pcov, "perr": self.perr,
            "param_names": list(self.param_names), "cost": self.cost, "chi2": self.chi2,
            "reduced_chi2": self.reduced_chi2, "dof": self.dof,
            "n_points_used": self.n_points_used, "nfev": self.nfev, "nit": self.nit,
            "status": int(self.status), "message": self.message, "success": self.success,
            "tier": self.tier, "config": self.config, "selection": self.selection,
            "history": self.history, "elapsed": self.elapsed, "p0": self.p0,
            "grad": self.grad, "optimality": self.optimality, "active_mask": self.active_mask,
            "fixed": self.fixed,
        }
        clash = {k: v for k, v in extras.items() if k in taken}
        if clash:
            d["extras"] = clash
        return {**jsonable(d), **{k: v for k, v in extras.items() if k not in taken}}

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
        if not isinstance(d, Mapping):
            raise TypeError(f"from_dict takes a dict such as FitResult.to_dict() returns; got "
                            f"{type(d).__name__}")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"not a FitResult dict: it lacks {missing} (to_dict() writes them)")
        names = {f.name for f in fields(cls)}
        extras = {k: v for k, v in d.items() if k not in names and k not in DERIVED_KEYS}
        extras.update(d.get("extras") or {})
        popt = _array(d["popt"], float)
        p = popt.size
        return cls(
            popt=popt, pcov=_array(d["pcov"], float).reshape(p, p),
            param_names=tuple(str(n) for n in d["param_names"]), cost=float(d["cost"]),
            n_points_used=int(d["n_points_used"]), nfev=int(d["nfev"]), nit=int(d["nit"]),
            status=_status(d["status"]), message=str(d["message"]),
            tier=parse_enum(WorkflowTier, d["tier"], "tier"), config=_config(d["config"]),
            selection=_selection(d.get("selection")), history=list(d.get("history") or []),
            elapsed=float(d.get("elapsed", 0.0)), extras=extras,
            grad=_array(d.get("grad"), float), optimality=float(d.get("optimality", "nan")),
            active_mask=_array(d.get("active_mask"), int), p0=_array(d.get("p0"), float),
            fixed={str(k): float(v) for k, v in (d.get("fixed") or {}).items()})

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
        import xarray as xr

        pre = f"{var}_" if var else ""
        n_used = int(self.n_points_used)
        attrs = {
            "nlsq_format": DATASET_FORMAT, "nlsq_tier": self.tier.value,
            "nlsq_message": self.message, "nlsq_nfev": int(self.nfev), "nlsq_nit": int(self.nit),
            "nlsq_n_points_used": n_used if n_used <= _INT32_MAX else float(n_used),
            "nlsq_status": int(self.status), "nlsq_cost": float(self.cost),
            "nlsq_elapsed": float(self.elapsed), "nlsq_optimality": float(self.optimality),
            **({"nlsq_explanation": self.selection.explain()}
               if isinstance(self.selection, Selection) else {}),
            **{f"nlsq_{k}": json.dumps(jsonable(getattr(self, k)))
               for k in ("config", "selection", "history", "extras", "fixed")},
        }
        data = {"coefficients": ("param", np.asarray(self.popt, float), attrs),
                "covariance": (("cov_i", "cov_j"), np.asarray(self.pcov, float)),
                "status": ((), np.int64(self.status)), "cost": ((), np.float64(self.cost)),
                "stderr": ("param", self.perr)}
        for name, dtype in (("p0", float), ("grad", float), ("active_mask", np.int8)):
            if getattr(self, name) is not None:
                data[name] = ("param", np.asarray(getattr(self, name), dtype))
        names = np.array(self.param_names, dtype=object)  # variable-length: zarr v3 has a spec
        return xr.Dataset({f"{pre}curvefit_{k}": v for k, v in data.items()},
                          coords={"param": names, "cov_i": names, "cov_j": names})

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
        pre = _prefix(ds, var)
        coef = ds[f"{pre}curvefit_coefficients"]
        a = coef.attrs
        if a.get("nlsq_format") != DATASET_FORMAT or coef.dims != ("param",):
            raise ValueError(f"{pre}curvefit_coefficients was not written by "
                             f"FitResult.to_dataset (no nlsq_format {DATASET_FORMAT!r} attribute "
                             f"or dims {coef.dims} not ('param',)); a per-pixel ds.nlsq.fit "
                             "output is not one fit's result")

        def values(name):
            v = ds.get(f"{pre}curvefit_{name}")
            return None if v is None else v.values

        d = {"popt": coef.values, "pcov": values("covariance"),
             "param_names": [str(n) for n in coef["param"].values],
             "cost": float(values("cost")), "status": int(values("status")),
             "p0": values("p0"), "grad": values("grad"), "active_mask": values("active_mask")}
        d.update({k: a[f"nlsq_{k}"] for k in ("tier", "message", "nfev", "nit",
                                                "n_points_used", "elapsed", "optimality")})
        d.update({k: json.loads(a[f"nlsq_{k}"]) for k in ("config", "selection", "history",
                                                          "extras", "fixed")
                  if f"nlsq_{k}" in a})
        return cls.from_dict(d)


def load_result(path, var: str | None = None) -> FitResult:
    """Read a kept :class:`FitResult` back from disk.

    Parameters
    ----------
    path : str or path_like
        A zarr store or netCDF file written from :meth:`FitResult.to_dataset`; a JSON file
        of :meth:`FitResult.to_dict`; or an ``nlsq-dask fit`` output folder (its
        ``result.json``, which is that JSON; the ``result.zarr`` beside it is another
        layout, for other tools, and is read through that ``result.json``).
    var : str, optional
        For a Dataset holding several results: the prefix given to ``to_dataset``.

    Returns
    -------
    FitResult
        Equal to the result that was written; not attached to its data (no ``fun``,
        ``jac``, R² or ``plot()`` without data).

    Raises
    ------
    FileNotFoundError
        If there is nothing at ``path``.
    ValueError
        If what is there is not a kept result.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result at {path}")
    zarr_store = path.is_dir() and any((path / m).exists() for m in ("zarr.json", ".zgroup"))
    if not zarr_store and path.is_dir():
        if not (path / "result.json").is_file():
            raise ValueError(f"{path} is a folder that is neither a zarr store nor an nlsq-dask "
                             "fit output folder (with result.json)")
        path = path / "result.json"
    if path.suffix.lower() == ".json":
        return FitResult.from_dict(json.loads(path.read_text(encoding="utf-8")))

    import warnings

    import xarray as xr

    if zarr_store and (path.parent / "result.json").is_file() and _is_job_zarr(path):
        return load_result(path.parent / "result.json")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated",
                                RuntimeWarning)
        opened = (xr.open_zarr(path) if zarr_store else xr.open_dataset(path))
    with opened as ds:
        return FitResult.from_dataset(ds.load(), var=var)


# ---------------------------------------------------------------------------- helpers
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


def _loss_name(loss) -> str:
    return repr(getattr(loss, "__name__", "callable") if callable(loss) else loss)


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


def _array(value, dtype):
    """``value`` (a list, with ``'inf'``/``'nan'`` strings allowed) as an array, or None."""
    return None if value is None else np.asarray(value, dtype=dtype)


def _status(value):
    from .solver import Status     # imports JAX: only when a result is rebuilt

    try:
        return Status(int(value))
    except ValueError:
        return int(value)


def _config(d) -> WorkflowConfig:
    if isinstance(d, WorkflowConfig):
        return d
    try:
        return WorkflowConfig.from_dict(dict(d))
    except ValueError:
        from .workflow.config import LOSSES

        loss = d.get("loss")
        if not isinstance(loss, str) or loss.strip().lower() in LOSSES:
            raise
        cfg = WorkflowConfig.from_dict({**d, "loss": "linear"})
        object.__setattr__(cfg, "loss", loss)       # a callable loss, by its name only
        return cfg


def _selection(d):
    if d is None or isinstance(d, Selection):
        return d
    from .workflow import DatasetProfile, ResourceSnapshot

    try:
        return Selection(tier=parse_enum(WorkflowTier, d["tier"], "tier"),
                         config=_config(d["config"]), partition_points=int(d["partition_points"]),
                         profile=DatasetProfile(**d["profile"]),
                         resources=ResourceSnapshot(**d["resources"]),
                         reasons=tuple(d.get("reasons", ())),
                         safety_fraction=float(d.get("safety_fraction", 0.5)))
    except (KeyError, TypeError, ValueError):
        return dict(d)


def _prefix(ds, var) -> str:
    if var:
        if f"{var}_curvefit_coefficients" not in ds:
            raise ValueError(f"the Dataset has no {var}_curvefit_coefficients")
        return f"{var}_"
    found = [str(k)[: -len("curvefit_coefficients")] for k in ds.data_vars
             if str(k).endswith("curvefit_coefficients")]
    if len(found) != 1:
        raise ValueError("the Dataset holds no fit result (no curvefit_coefficients)" if not found
                         else f"the Dataset holds {len(found)} results ({found}): pass var=")
    return found[0]


def _is_job_zarr(path: Path) -> bool:
    """Whether ``path`` is the ``result.zarr`` of an ``nlsq-dask fit`` job."""
    import zarr

    try:
        return "job" in zarr.open_group(str(path), mode="r").attrs
    except Exception:
        return False


def _total_sum_of_squares(inputs) -> float:
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
