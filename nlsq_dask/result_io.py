"""Keeping a fit's result: :func:`to_dict` / :func:`from_dict` (JSON), :func:`to_dataset` /
:func:`from_dataset` (an ``xarray.Dataset`` in ``Dataset.curvefit``'s names, for
``to_zarr`` / ``to_netcdf``) and :func:`load_result` (a path), each round trip giving an
equal :class:`~nlsq_dask.result.FitResult`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .job_output import jsonable
from .workflow import Selection, WorkflowConfig, WorkflowTier, parse_enum

if TYPE_CHECKING:
    from .result import FitResult

#: keys :meth:`FitResult.to_dict` adds that are computed from the fields
DERIVED_KEYS = ("perr", "chi2", "reduced_chi2", "dof", "success")
#: the format of :meth:`FitResult.to_dataset` (the coefficients' ``nlsq_format`` attribute)
DATASET_FORMAT = "nlsq_dask.FitResult/1"
_REQUIRED = ("popt", "pcov", "param_names", "cost", "n_points_used", "nfev", "nit", "status",
             "message", "tier", "config")
_INT32_MAX = 2**31 - 1        # netCDF3 (scipy's writer) holds no larger integer attribute


def to_dict(result) -> dict[str, Any]:
    """:meth:`~nlsq_dask.result.FitResult.to_dict` (see there)."""
    taken = {f.name for f in fields(result)} | set(DERIVED_KEYS)
    extras = jsonable(result.extras)
    d = {
        "popt": result.popt, "pcov": result.pcov, "perr": result.perr,
        "param_names": list(result.param_names), "cost": result.cost, "chi2": result.chi2,
        "reduced_chi2": result.reduced_chi2, "dof": result.dof,
        "n_points_used": result.n_points_used, "nfev": result.nfev, "nit": result.nit,
        "status": int(result.status), "message": result.message, "success": result.success,
        "tier": result.tier, "config": result.config, "selection": result.selection,
        "history": result.history, "elapsed": result.elapsed, "p0": result.p0,
        "grad": result.grad, "optimality": result.optimality, "active_mask": result.active_mask,
        "fixed": result.fixed, "n_passes": result.n_passes,
        "equivalent_passes": result.equivalent_passes,
    }
    clash = {k: v for k, v in extras.items() if k in taken}
    if clash:
        d["extras"] = clash
    return {**jsonable(d), **{k: v for k, v in extras.items() if k not in taken}}


def from_dict(cls, d: Mapping[str, Any]) -> FitResult:
    """:meth:`~nlsq_dask.result.FitResult.from_dict` (see there)."""
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
        fixed={str(k): float(v) for k, v in (d.get("fixed") or {}).items()},
        n_passes=int(d.get("n_passes", d["nfev"])),
        equivalent_passes=float(d.get("equivalent_passes", d["nfev"])))


def to_dataset(result, var: str | None = None):
    """:meth:`~nlsq_dask.result.FitResult.to_dataset` (see there)."""
    import xarray as xr

    pre = f"{var}_" if var else ""
    n_used = int(result.n_points_used)
    attrs = {
        "nlsq_format": DATASET_FORMAT, "nlsq_tier": result.tier.value,
        "nlsq_message": result.message, "nlsq_nfev": int(result.nfev), "nlsq_nit": int(result.nit),
        "nlsq_n_points_used": n_used if n_used <= _INT32_MAX else float(n_used),
        "nlsq_status": int(result.status), "nlsq_cost": float(result.cost),
        "nlsq_elapsed": float(result.elapsed), "nlsq_optimality": float(result.optimality),
        "nlsq_n_passes": int(result.n_passes),
        "nlsq_equivalent_passes": float(result.equivalent_passes),
        **({"nlsq_explanation": result.selection.explain()}
           if isinstance(result.selection, Selection) else {}),
        **{f"nlsq_{k}": json.dumps(jsonable(getattr(result, k)))
           for k in ("config", "selection", "history", "extras", "fixed")},
    }
    data = {"coefficients": ("param", np.asarray(result.popt, float), attrs),
            "covariance": (("cov_i", "cov_j"), np.asarray(result.pcov, float)),
            "status": ((), np.int64(result.status)), "cost": ((), np.float64(result.cost)),
            "stderr": ("param", result.perr)}
    for name, dtype in (("p0", float), ("grad", float), ("active_mask", np.int8)):
        if getattr(result, name) is not None:
            data[name] = ("param", np.asarray(getattr(result, name), dtype))
    names = np.array(result.param_names, dtype=object)  # variable-length: zarr v3 has a spec
    return xr.Dataset({f"{pre}curvefit_{k}": v for k, v in data.items()},
                      coords={"param": names, "cov_i": names, "cov_j": names})


def from_dataset(cls, ds, var: str | None = None) -> FitResult:
    """:meth:`~nlsq_dask.result.FitResult.from_dataset` (see there)."""
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
    d.update({k: a[f"nlsq_{k}"] for k in ("n_passes", "equivalent_passes") if f"nlsq_{k}" in a})
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
    from .result import FitResult

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

