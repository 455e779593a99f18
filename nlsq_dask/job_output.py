"""Results of a ``nlsq-dask fit`` job: ``result.json`` and ``result.zarr``, written atomically."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict
from enum import Enum
from pathlib import Path

import numpy as np


def jsonable(obj, finite: bool = False):
    """JSON-safe copy: numpy to Python, enums to values; with ``finite`` inf/nan as strings."""
    obj = obj.value if isinstance(obj, Enum) else obj
    obj = obj.tolist() if isinstance(obj, (np.ndarray, np.generic)) else obj
    obj = obj.to_dict() if callable(getattr(obj, "to_dict", None)) else obj
    if isinstance(obj, dict):
        return {str(k): jsonable(v, finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, finite) for v in obj]
    if isinstance(obj, float) and finite and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj if obj is None or isinstance(obj, (bool, int, float, str)) else str(obj)


def history_arrays(history, n_params: int) -> dict[str, np.ndarray]:
    """The accepted-iteration history as columns (params is ``(n_iterations, n_params)``)."""
    cols = {name: np.asarray([h.get(name, default) for h in history], dtype=dtype)
            for name, default, dtype in (("iteration", -1, np.int64), ("nfev", -1, np.int64),
                                         ("cost", np.nan, float), ("elapsed", np.nan, float))}
    cols["params"] = np.asarray([h["params"] for h in history], float).reshape(-1, n_params)
    return cols


def output_paths(out: Path) -> dict[str, Path]:
    """``result.json`` and ``result.zarr`` in the folder ``out``, checked before a fit runs.

    Raises ``ValueError`` if ``out`` is a file or a link, or a result there is a link:
    replacing a link would delete or overwrite whatever it points to.
    """
    out = Path(out)
    if out.is_symlink():
        raise ValueError(f"output {out} is a symbolic link (to {os.readlink(out)}); nlsq-dask "
                         "never writes or deletes through links: give the real folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is a file, not a folder: choose another output")
    paths = {"json": out / "result.json", "zarr": out / "result.zarr"}
    for path in paths.values():
        if path.is_symlink():
            raise ValueError(f"output {path} is a symbolic link (to {os.readlink(path)}); "
                             "nlsq-dask never writes or deletes through links: remove it or "
                             "choose another output folder")
    return paths


def write_results(result, job, output: Path | None = None) -> dict[str, Path]:
    """Write ``result.json`` and ``result.zarr`` into the output folder (replacing old ones)."""
    import zarr

    out = Path(output or job.output)
    paths = output_paths(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".result.json.{os.getpid()}"
    tmp.write_text(json.dumps(jsonable(result.to_dict()), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, paths["json"])

    tmpz = out / f".result.zarr.{os.getpid()}"
    shutil.rmtree(tmpz, ignore_errors=True)
    group = zarr.open_group(str(tmpz), mode="w")
    for name, value in (("popt", result.popt), ("pcov", result.pcov), ("perr", result.perr)):
        group.create_array(name, data=np.asarray(value, dtype=np.float64))
    hist = group.require_group("history")
    for name, value in history_arrays(result.history, len(result.popt)).items():
        hist.create_array(name, data=value)
    summary = {k: v for k, v in result.to_dict().items()
               if k not in ("popt", "pcov", "perr", "history", "config", "selection")}
    group.attrs.update(jsonable({
        **summary, "param_names": list(result.param_names), "config": result.config.to_dict(),
        "job": {"config_file": str(job.source.resolve()), "model": job.model_name,
                "data": asdict(job.data)},
    }, finite=True))
    if paths["zarr"].exists():
        shutil.rmtree(paths["zarr"])
    os.replace(tmpz, paths["zarr"])
    return paths
