"""A fit described by a YAML job file: what ``nlsq-dask fit CONFIG.yaml`` runs.

A job file holds the sections of ``nlsq.yaml`` (``workflow``, ``tolerances``,
``cluster``) plus the job's own: ``data`` (a zarr store and the variables to fit),
``model``, ``p0``, ``bounds``, ``param_names``, ``fit`` (keyword options of
:func:`nlsq_dask.fit`) and ``output``. :func:`load_job` validates everything
before any data is read or any cluster is started; :func:`run_job` opens the data
lazily, starts or connects to the cluster and fits; :func:`~nlsq_dask.job_output.write_results` stores
``result.json`` and ``result.zarr``. Relative paths in the file are relative to its
folder, which is importable: a model module there is uploaded to the cluster. User
errors raise ``ValueError``/``FileNotFoundError`` with a one-line message.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


from .workflow.config import CHECKPOINT_FIELDS, CHECKPOINT_RUN_OPTIONS
from .workflow.yaml_file import YAML_SECTIONS, parse_yaml_file, validate_yaml_doc

log = logging.getLogger("nlsq_dask.job")

JOB_SECTIONS = ("data", "model", "p0", "bounds", "param_names", "fit", "output")
DATA_KEYS = ("path", "x", "y", "sigma", "chunks")
#: ``fit`` section keys that are WorkflowConfig fields (checked before any data is read)
CONFIG_KEYS = ("goal", "tier", "loss", "f_scale", "ftol", "xtol", "gtol", "max_nfev", "reduction",
               "chunk_size", "memory_limit_gb", "split_every") + CHECKPOINT_FIELDS
#: keys of the ``fit`` section: keyword options of nlsq_dask.fit
FIT_KEYS = CONFIG_KEYS + ("absolute_sigma", "preset", "x_scale", "nan_policy") \
    + CHECKPOINT_RUN_OPTIONS
_FLOAT_KEYS = ("f_scale", "ftol", "xtol", "gtol", "memory_limit_gb")
_INT_KEYS = ("max_nfev", "chunk_size", "split_every", "checkpoint_frequency")


@dataclass
class DataSpec:
    """Where the data of a job are: a zarr store and variable names."""

    path: Path
    y: str
    x: str | list[str] | None = None
    sigma: str | None = None
    chunks: int | None = None


@dataclass
class Job:
    """A validated job file."""

    source: Path
    data: DataSpec
    model_name: str
    model: object
    param_names: tuple[str, ...]
    p0: list[float]
    bounds: tuple[list[float], list[float]]
    fit_options: dict = field(default_factory=dict)
    workflow: dict = field(default_factory=dict)
    output: Path = Path(".")
    model_file: Path | None = None  # the model's module when it lies next to the job file


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _number(value, where: str, integer: bool = False):
    """A float (or int) from YAML; PyYAML reads ``1e-10`` as a string, ``.inf`` as inf."""
    try:
        if isinstance(value, bool) or value is None:
            raise TypeError
        out = float(str(value).replace("_", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number; got {value!r}") from None
    if integer and not out.is_integer():
        raise ValueError(f"{where} must be an integer; got {value!r}")
    return int(out) if integer else out


def _check_keys(body, valid, where: str, source) -> dict:
    if not isinstance(body, dict):
        raise ValueError(f"section {where!r} of {source} must be a mapping; got "
                         f"{type(body).__name__}")
    for key in body:
        if key not in valid:
            raise ValueError(f"unknown key {key!r} in section {where!r} of {source}; valid keys "
                             f"are: {', '.join(valid)}")
    return body


def _resolve_path(value, base: Path, where: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{where} must be a path; got {value!r}")
    path = Path(os.path.expanduser(os.fspath(value)))
    return path if path.is_absolute() else base / path


def _name(value, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} must be a variable name; got {value!r}")
    return value


def parse_data(body, base: Path, source) -> DataSpec:
    body = _check_keys(body, DATA_KEYS, "data", source)
    missing = [key for key in ("path", "x", "y") if key not in body]
    if missing:
        raise ValueError(f"section 'data' of {source} needs {', '.join(map(repr, missing))}")
    x, sigma, chunks = body["x"], body.get("sigma"), body.get("chunks")
    x = [_name(v, "data.x") for v in x] if isinstance(x, list) and x else _name(x, "data.x")
    chunks = None if chunks is None else _number(chunks, "data.chunks", integer=True)
    if chunks is not None and chunks < 1:
        raise ValueError(f"data.chunks must be a positive number of points; got {chunks}")
    return DataSpec(path=_resolve_path(body["path"], base, "data.path"),
                    y=_name(body["y"], "data.y"), x=x,
                    sigma=None if sigma is None else _name(sigma, "data.sigma"), chunks=chunks)


def _edge(value, where: str, default: float) -> float:
    return default if value is None else _number(value, where)


def parse_parameters(model, model_name: str, p0, bounds, param_names):
    """``(names, p0, (lb, ub))`` from the ``p0``, ``bounds`` and ``param_names`` sections."""
    from .solver import infer_param_names

    if param_names is not None and (not isinstance(param_names, list)
                                    or not all(isinstance(n, str) for n in param_names)):
        raise ValueError(f"param_names must be a list of names; got {param_names!r}")
    if not isinstance(p0, (dict, list)):
        raise ValueError(f"p0 must be a list of numbers or a mapping name: value; got {p0!r}")
    try:
        names = infer_param_names(model, param_names, None)
    except TypeError:  # model(x, *params): named by param_names, the p0 mapping, or p0, p1, ...
        names = tuple(param_names or [str(k) for k in p0] if isinstance(p0, dict)
                      else param_names or [f"p{i}" for i in range(len(p0))])
    n, where = len(names), f"model {model_name!r} has {len(names)} parameters ({', '.join(names)})"
    if isinstance(p0, dict):
        missing, extra = [k for k in names if k not in p0], [str(k) for k in p0 if k not in names]
        if missing or extra:
            raise ValueError(f"p0 must give a value for each parameter: {where}; missing: "
                             f"{missing or 'none'}, unknown: {extra or 'none'}")
        values = [_number(p0[k], f"p0.{k}") for k in names]
    elif len(p0) != n:
        raise ValueError(f"p0 has {len(p0)} values but {where}")
    else:
        values = [_number(v, f"p0[{i}]") for i, v in enumerate(p0)]
    lb, ub = [-math.inf] * n, [math.inf] * n
    if bounds is None:
        return names, values, (lb, ub)
    if isinstance(bounds, dict):
        unknown = [str(k) for k in bounds if k not in names]
        if unknown:
            raise ValueError(f"bounds name unknown parameter(s) {unknown}; {where}")
        for i, name in enumerate(names):
            pair = bounds.get(name, [None, None])
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError(f"bounds.{name} must be [lower, upper]; got {pair!r}")
            lb[i] = _edge(pair[0], f"bounds.{name}[0]", -math.inf)
            ub[i] = _edge(pair[1], f"bounds.{name}[1]", math.inf)
        return names, values, (lb, ub)
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ValueError(f"bounds must be [lower list, upper list] or a mapping name: [lo, hi]; "
                         f"got {bounds!r}")
    out = []
    for side, default, label in ((bounds[0], -math.inf, "lower"), (bounds[1], math.inf, "upper")):
        side = side if isinstance(side, list) else [side] * n
        if len(side) != n:
            raise ValueError(f"bounds: the {label} list has {len(side)} values but {where}")
        out.append([_edge(v, f"bounds {label}[{i}]", default) for i, v in enumerate(side)])
    return names, values, (out[0], out[1])


def parse_fit_options(body, base: Path, source) -> dict:
    body = dict(_check_keys(body or {}, FIT_KEYS, "fit", source))
    for key in _FLOAT_KEYS + _INT_KEYS:
        if body.get(key) is not None:
            body[key] = _number(body[key], f"fit.{key}", integer=key in _INT_KEYS)
    if body.get("checkpoint_dir") is not None:
        body["checkpoint_dir"] = str(_resolve_path(body["checkpoint_dir"], base,
                                                   "fit.checkpoint_dir"))
    return body


def import_model(spec, base: Path):
    """``(model, file)``: the function, and its module's file when it lies in ``base``."""
    from .models import resolve_model

    if not isinstance(spec, str):
        raise ValueError(f"model must be a built-in name or 'package.module:function'; got {spec!r}")
    if str(base) not in sys.path:
        sys.path.append(str(base))
    fn = resolve_model(spec)
    mfile = getattr(sys.modules.get(getattr(fn, "__module__", "") or ""), "__file__", None)
    local = mfile is not None and Path(mfile).resolve().is_relative_to(base.resolve())
    return fn, Path(mfile) if local else None


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    doc = parse_yaml_file(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path} must contain a mapping of sections; got {type(doc).__name__}")
    return doc


def load_job(path, output=None) -> Job:
    """Read and validate a job file (nothing is computed, no cluster is started)."""
    source = Path(path)
    doc = read_yaml(source)
    base = source.resolve().parent
    for key in doc:
        if key not in JOB_SECTIONS + YAML_SECTIONS:
            raise ValueError(f"unknown section {key!r} in {source}; valid sections are: "
                             f"{', '.join(JOB_SECTIONS + YAML_SECTIONS)}")
    missing = [key for key in ("data", "model", "p0") if key not in doc]
    if missing:
        raise ValueError(f"{source} needs the section(s) {', '.join(map(repr, missing))}")
    workflow = validate_yaml_doc({k: doc[k] for k in YAML_SECTIONS if k in doc}, str(source))
    wf = workflow.get("workflow", {})
    if wf.get("checkpoint_dir"):
        wf["checkpoint_dir"] = str(_resolve_path(wf["checkpoint_dir"], base, "checkpoint_dir"))
    data = parse_data(doc["data"], base, source)
    model, model_file = import_model(doc["model"], base)
    names, p0, bounds = parse_parameters(model, doc["model"], doc["p0"], doc.get("bounds"),
                                         doc.get("param_names"))
    out = (Path(output) if output is not None
           else base / f"{source.stem}-result" if doc.get("output") is None
           else _resolve_path(doc["output"], base, "output"))
    return Job(source=source, data=data, model_name=doc["model"], model=model,
               param_names=names, p0=p0, bounds=bounds,
               fit_options=parse_fit_options(doc.get("fit"), base, source),
               workflow=workflow, output=out, model_file=model_file)


def open_data(spec: DataSpec):
    """``(x, y, sigma)`` as dask arrays read lazily from the zarr store (x a tuple for a list)."""
    import dask.array as da
    import zarr

    if not spec.path.exists():
        raise FileNotFoundError(f"data.path {str(spec.path)!r} does not exist")
    try:
        group = zarr.open_group(str(spec.path), mode="r")
    except Exception as exc:  # noqa: BLE001 - any reason it is not a readable zarr group
        raise ValueError(f"data.path {str(spec.path)!r} is not a zarr group "
                         f"({type(exc).__name__}: {_one_line(exc)})") from None

    def var(name, role):
        if name is None:
            return None
        if not isinstance(group.get(name), zarr.Array):
            raise ValueError(f"data.{role}: variable {name!r} not found in {spec.path}; "
                             f"available: {', '.join(sorted(group.array_keys())) or 'none'}")
        arr = da.from_zarr(str(spec.path), component=name)
        return arr.rechunk(spec.chunks) if spec.chunks and arr.ndim == 1 else arr

    x = tuple(var(n, "x") for n in spec.x) if isinstance(spec.x, list) else var(spec.x, "x")
    return x, var(spec.y, "y"), var(spec.sigma, "sigma")


def describe_data(spec: DataSpec, n_params: int, config, memory_limit_gb=None):
    """``(lines, selection)`` for a dataset: shapes, chunks and the selector's choice, lazily."""
    from .engines.data import prepare_inputs
    from .workflow import DatasetProfile, ResourceSnapshot, WorkflowSelector

    x, y, sigma = open_data(spec)
    inputs = prepare_inputs(y if x is None else x, y, sigma)
    lines = [f"data: {spec.path}"]
    roles = ([("x", n, a) for n, a in zip(spec.x, x)] if isinstance(spec.x, list)
             else [("x", spec.x, x)]) + [("y", spec.y, y), ("sigma", spec.sigma, sigma)]
    for role, name, arr in roles:
        if arr is not None:
            lines.append(f"  {role} {name!r}: {arr.dtype} shape {arr.shape}, "
                         f"{len(arr.chunks[0])} chunk(s) of <= {max(arr.chunks[0]):,} points")
    if x is None:
        lines.append("  x: not given (one input assumed)")
    profile = DatasetProfile(n_points=inputs.n_points, n_params=n_params,
                             n_inputs=inputs.n_inputs, itemsize=inputs.itemsize,
                             has_sigma=sigma is not None, partition_points=inputs.partition_points,
                             n_partitions=inputs.n_partitions, lazy=True)
    resources = ResourceSnapshot.detect(memory_limit_gb=memory_limit_gb)
    return lines, WorkflowSelector().select(profile, resources, config)


def start_cluster(job: Job, address: str | None = None):
    """A :class:`~nlsq_dask.cluster.ClusterHandle`, or None to run on dask's threads."""
    from . import cluster

    section = job.workflow.get("cluster")  # --address wins, then the section, then the workflow's
    address = address or (None if section else
                          job.workflow.get("workflow", {}).get("scheduler_address"))
    try:
        if address:
            return cluster.ClusterHandle(cluster.connect(address))
        return cluster.from_config(section) if section else None
    except ImportError as exc:
        raise ValueError(_one_line(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot connect to the dask scheduler at "
                         f"{address or section.get('address')}: {_one_line(exc)}") from None


def run_job(job: Job, address: str | None = None):
    """Fit the job's data (on its cluster, if any) and return the :class:`FitResult`."""
    import yaml

    from .api import fit
    from .workflow import resolve_config

    fd, wf_path = tempfile.mkstemp(prefix="nlsq-job-", suffix=".yaml")  # the nlsq.yaml sections
    os.close(fd)
    Path(wf_path).write_text(yaml.safe_dump(job.workflow), encoding="utf-8")
    handle = None
    try:
        options = dict(job.fit_options)
        overrides = {k: options.get(k) for k in CONFIG_KEYS}
        resolve_config(preset=options.get("preset"), overrides=overrides, yaml_path=wf_path)
        x, y, sigma = open_data(job.data)
        log.info("data: %s: %s points, %d partition(s) of <= %s points", job.data.path,
                 f"{y.shape[0]:,}", len(y.chunks[0]), f"{max(y.chunks[0]):,}")
        handle = start_cluster(job, address)
        if handle is None:
            log.info("cluster: none (dask threaded scheduler)")
        else:
            workers = handle.client.scheduler_info(n_workers=-1).get("workers", {}).values()
            log.info("cluster: %s: %d worker(s), %d thread(s)", handle.client.scheduler.address,
                     len(workers), sum(int(w.get("nthreads", 0)) for w in workers))
            if job.model_file is not None:  # the scheduler and workers need the model's module
                handle.client.upload_file(str(job.model_file))
        log.info("fitting model %s (%s) from p0=%s", job.model_name, ", ".join(job.param_names),
                 job.p0)
        return fit(job.model, x, y, p0=job.p0, sigma=sigma, bounds=job.bounds,
                   param_names=list(job.param_names), yaml_path=wf_path,
                   client=handle.client if handle else None, **options)
    finally:
        if handle is not None:
            handle.close()
        os.unlink(wf_path)
