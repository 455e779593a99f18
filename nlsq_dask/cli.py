"""The ``nlsq-dask`` command (also ``python -m nlsq_dask``).

Subcommands are registered from :data:`COMMANDS`: each entry is a function that
adds its subparser to the parser and sets ``func`` to the handler that runs it.
Handlers only gather arguments, call the library and print; they hold no fitting
logic. User errors (ValueError, TypeError, FileNotFoundError, and data that changed
or could not be read) print ``nlsq-dask: error: <message>`` to stderr and exit with
status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import DataChangedError, DataReadError

DEMO_TRUE = (2.0, 0.5, 0.3)
DEMO_P0 = (2.5, 0.6, 0.2)
DEMO_NOISE = 0.05
DEMO_CHUNK = 1_000_000
DEMO_KEY = "nlsq_dask_demo"
DEMO_DASHBOARD = "127.0.0.1:8787"  # dask's port, this machine only; another port when taken
TIER_CHOICES = ("auto", "standard", "chunked", "streaming", "streaming_checkpoint")
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, DataChangedError, DataReadError)


def decay(x, a, b, c):
    """The demo model ``a * exp(-b * x) + c``."""
    import jax.numpy as jnp

    return a * jnp.exp(-b * x) + c


def positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonneg_int(text: str) -> int:
    return 0 if text.strip() == "0" else positive_int(text)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# ----------------------------------------------------------------------------- demo
def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="fit an exponential decay to a generated zarr dataset",
        description="Write (or reuse) a zarr dataset of y = 2 exp(-0.5 x) + 0.3 + N(0, 0.05) "
                    "on x in [0, 10], start a local dask cluster and fit it out of core.")
    p.add_argument("--points", type=positive_int, default=10_000_000,
                   help="number of data points (default: 10_000_000)")
    p.add_argument("--path", type=Path, default=Path("nlsq-demo.zarr"),
                   help="zarr store to write or reuse (default: ./nlsq-demo.zarr)")
    p.add_argument("--workers", type=nonneg_int, default=2,
                   help="worker processes of the local cluster, 1 thread each; 0 runs on "
                        "dask's threaded scheduler without a cluster (default: 2)")
    p.add_argument("--tier", choices=TIER_CHOICES, default="streaming",
                   help="workflow tier; 'auto' lets the selector choose (default: streaming)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    p.add_argument("--dashboard", action="store_true",
                   help="serve dask's dashboard on this machine (port 8787, or a free one) "
                        "and print its link before the fit; needs bokeh: "
                        'pip install "nlsq-dask[dashboard]"')
    p.set_defaults(func=cmd_demo)


def demo_dataset(path: Path, n: int, seed: int) -> bool:
    """Write the demo store chunk by chunk unless a complete one is there; True if reused."""
    import dask
    import dask.array as da
    import zarr

    want = {"points": n, "seed": seed, "chunk": min(DEMO_CHUNK, n), "complete": True}
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        try:
            group = zarr.open_group(str(path), mode="r")
            ours = DEMO_KEY in group.attrs
            if ours and dict(group.attrs[DEMO_KEY]) == want and all(
                    name in group and group[name].shape == (n,) for name in ("x", "y")):
                return True
        except Exception:  # noqa: BLE001 - not a zarr group at all
            ours = False
        if not ours:
            raise ValueError(f"{str(path)!r} exists and is not an nlsq-dask demo dataset; "
                             "choose another --path")
    group = zarr.open_group(str(path), mode="w")
    group.attrs[DEMO_KEY] = {**want, "complete": False}
    x = da.linspace(0.0, 10.0, n, chunks=want["chunk"])
    noise = da.random.default_rng(seed).normal(0.0, DEMO_NOISE, size=n, chunks=want["chunk"])
    a, b, c = DEMO_TRUE
    y = a * da.exp(-b * x) + c + noise
    writes = [da.to_zarr(arr, str(path), component=name, overwrite=True, compute=False)
              for name, arr in (("x", x), ("y", y))]
    dask.compute(*writes, scheduler="threads")
    zarr.open_group(str(path), mode="r+").attrs[DEMO_KEY] = want
    return False


def start_cluster(n_workers: int, dashboard: bool = False):
    """An embedded LocalCluster and its Client, or ``(None, None)`` for 0 workers.

    Parameters
    ----------
    n_workers : int
        Single-thread worker processes; 0 for none.
    dashboard : bool
        Serve dask's dashboard at :data:`DEMO_DASHBOARD` (another free port when that
        one is taken; the cluster's ``dashboard_link`` has the port in use).

    Returns
    -------
    tuple
        ``(cluster, client)``.
    """
    if n_workers == 0:
        return None, None
    import logging
    import warnings

    from distributed import Client

    from .cluster import local_cluster

    with warnings.catch_warnings():
        # "Port 8787 is already in use ... on port N instead": the printed link has N
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        # errors only: a worker's heartbeat racing the scheduler's shutdown at the end of
        # the demo logs a warning with a traceback that means nothing to the user
        cluster = local_cluster(n_workers, threads_per_worker=1, processes=True,
                                dashboard_address=DEMO_DASHBOARD if dashboard else None,
                                silence_logs=logging.ERROR)
    return cluster, Client(cluster)


def check_dashboard(args) -> None:
    """Raise ``ValueError`` before any work when ``--dashboard`` cannot be honoured."""
    if not args.dashboard:
        return
    if args.workers == 0:
        raise ValueError("--dashboard needs a cluster: use --workers 1 or more")
    from .cluster import dashboard_missing

    problem = dashboard_missing()
    if problem:
        raise ValueError(problem)


def cmd_demo(args) -> int:
    import dask.array as da

    import nlsq_dask

    check_dashboard(args)
    t0 = time.perf_counter()
    reused = demo_dataset(args.path, args.points, args.seed)
    print(f"data: {args.points:,} points in {args.path} "
          f"({'reused' if reused else 'written'}, {time.perf_counter() - t0:.2f} s)")
    x = da.from_zarr(str(args.path), component="x")
    y = da.from_zarr(str(args.path), component="y")
    cluster, client = start_cluster(args.workers, dashboard=args.dashboard)
    try:
        if cluster is not None:
            print(f"cluster: LocalCluster, {args.workers} worker processes x 1 thread")
            if args.dashboard:
                print(f"dashboard: {cluster.dashboard_link}", flush=True)
        else:
            print("cluster: none (dask threaded scheduler)")
        tier = None if args.tier == "auto" else args.tier
        t1 = time.perf_counter()
        result = nlsq_dask.fit(decay, x, y, p0=list(DEMO_P0), tier=tier, client=client,
                               progress=True)
        fit_s = time.perf_counter() - t1
    finally:
        if client is not None:
            client.close()
            cluster.close()
    print(f"model: y = a * exp(-b * x) + c; true a={DEMO_TRUE[0]}, b={DEMO_TRUE[1]}, "
          f"c={DEMO_TRUE[2]}")
    print(f"status: {'converged' if result.success else 'NOT converged'}: {result.message}")
    for name, value, err in zip(result.param_names, result.popt, result.perr):
        print(f"  {name} = {value:.6f} ± {err:.2g}")
    print(f"tier: {result.tier.value}")
    if result.selection is not None:
        print("selection:")
        print(indent(result.selection.explain()))
    print(f"passes (nfev): {result.nfev}; iterations: {result.nit}")
    print(f"wall time: fit {fit_s:.2f} s; total {time.perf_counter() - t0:.2f} s")
    return 0 if result.success else 1


# ----------------------------------------------------------------------------- info
def add_info(sub) -> None:
    p = sub.add_parser(
        "info", help="show memory, GPUs, cluster and what the selector would choose",
        description="Report this machine's resources and the workflow the selector would "
                    "pick for a dataset of --points x --params (nothing is computed).")
    p.add_argument("--points", type=positive_int, default=10_000_000,
                   help="dataset size for the selection (default: 10_000_000)")
    p.add_argument("--params", type=positive_int, default=3,
                   help="number of fit parameters (default: 3)")
    p.add_argument("--goal", default=None,
                   help="optimization goal (fast, robust, global, memory_efficient, quality)")
    p.add_argument("--preset", default=None, help="workflow preset name")
    p.add_argument("--memory-limit-gb", type=positive_float, default=None,
                   help="cap on local memory for the selection")
    d = p.add_argument_group("dataset", "report on a zarr dataset instead of --points "
                                        "(shapes and chunks only; nothing is read)")
    d.add_argument("--data", type=Path, default=None, metavar="ZARR", help="zarr store")
    d.add_argument("--y", default=None, metavar="NAME", help="variable of the observations")
    d.add_argument("--x", action="append", default=None, metavar="NAME",
                   help="independent variable (repeat for several)")
    d.add_argument("--sigma", default=None, metavar="NAME", help="variable of the uncertainties")
    d.add_argument("--chunks", type=positive_int, default=None, metavar="N",
                   help="points per partition (rechunk)")
    p.set_defaults(func=cmd_info)


def package_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("nlsq-dask", "jax", "dask", "distributed", "zarr", "xarray", "numpy"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def memory_limit_origin(args) -> str:
    """Where ``info``'s memory cap came from: the option, the variable, or ``nlsq.yaml``."""
    import os

    if args.memory_limit_gb is not None:
        return "--memory-limit-gb"
    if os.environ.get("NLSQ_MEMORY_LIMIT_GB", "").strip():
        return "NLSQ_MEMORY_LIMIT_GB"
    return "nlsq.yaml"


def cmd_info(args) -> int:
    import os
    import platform

    from nlsq_dask.workflow import (ClusterDetector, auto_select_workflow, get_memory_tier,
                                    resolve_config)
    from nlsq_dask.workflow.resources import detect_host_memory, get_gpu_free_memory_gb

    config = resolve_config(preset=args.preset,
                            overrides={"goal": args.goal, "memory_limit_gb": args.memory_limit_gb})
    host = detect_host_memory()
    gpus = get_gpu_free_memory_gb()
    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    print(f"packages: {package_versions()}")
    print(f"cpu: {os.cpu_count()} logical cores")
    print(f"host memory: {host.describe()}")
    if config.memory_limit_gb is not None:
        print(f"memory limit: {config.memory_limit_gb:g} GiB ({memory_limit_origin(args)}); "
              f"the selection counts {min(host.available_gb, config.memory_limit_gb):.1f} GiB "
              "of host memory")
    if gpus:
        free = ", ".join(f"{g:.1f}" for g in gpus)
        print(f"gpus: {len(gpus)} visible, free memory (GiB): {free}")
    else:
        print("gpus: none visible")
    total = host.available_gb + sum(gpus)  # get_total_available_memory_gb(), detected once
    print(f"memory tier: {get_memory_tier(total).value} ({total:.1f} GiB host + GPU available)")
    cluster = ClusterDetector().detect()
    if cluster is None:
        print("cluster: none detected (plain local machine)")
    else:
        print(f"cluster: {cluster.scheduler}, {cluster.node_count} node(s), "
              f"{cluster.total_gpus} GPU(s)"
              + (f", job {cluster.job_id}" if cluster.job_id else "")
              + (f", address {cluster.address}" if cluster.address else ""))
        if cluster.node_list:
            print(f"  nodes: {', '.join(cluster.node_list)}")
    changed = config.differences()
    if changed:
        print("configuration (nlsq.yaml, NLSQ_* and options): "
              + ", ".join(f"{k}={v}" for k, v in changed.items()))
    if args.data is not None:
        from nlsq_dask.job import DataSpec, describe_data

        if not args.y:
            raise ValueError("info --data needs --y NAME (the variable of the observations)")
        x = args.x if args.x is None or len(args.x) > 1 else args.x[0]
        lines, selection = describe_data(
            DataSpec(args.data, args.y, x, args.sigma, args.chunks), args.params, config,
            args.memory_limit_gb)
        print("\n".join(lines))
        what = f"{args.data}"
    else:
        selection = auto_select_workflow(args.points, args.params, config=config)
        what = f"{args.points:,} points"
    print(f"selection for {what} x {args.params} params "
          f"(no dask client; a cluster's workers can change it): {selection.tier.value}")
    print(indent(selection.explain()))
    return 0


# ----------------------------------------------------------------------------- fit
def add_fit(sub) -> None:
    p = sub.add_parser(
        "fit", help="run the fit a YAML job file describes",
        description="Fit a model to zarr data as CONFIG.yaml describes (sections data, model, "
                    "p0, bounds, param_names, fit, output, workflow, tolerances, cluster; "
                    "see docs/cli.md). Writes result.json and result.zarr into the output "
                    "folder. Exit status: 0 converged, 1 not converged, 2 bad config or data.")
    p.add_argument("config", type=Path, metavar="CONFIG.yaml", help="the job file")
    p.add_argument("--output", type=Path, default=None, metavar="DIR",
                   help="output folder (default: the file's 'output', else "
                        "<config folder>/<config stem>-result)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="run on the dask scheduler at ADDR (e.g. tcp://host:8786) instead of "
                        "the 'cluster' section")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    p.set_defaults(func=cmd_fit)


def cmd_fit(args) -> int:
    import logging

    from nlsq_dask.job import load_job, run_job
    from nlsq_dask.job_output import output_paths, write_results

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("nlsq_dask").setLevel(logging.WARNING if args.quiet else logging.INFO)
    logging.captureWarnings(True)
    job = load_job(args.config, output=args.output)
    output_paths(job.output)            # before the fit, not after an hour of work
    result = run_job(job, address=args.address)
    paths = write_results(result, job)
    print(result.summary())
    print(f"wrote {paths['json']} and {paths['zarr']}")
    return 0 if result.success else 1


# ----------------------------------------------------------------------------- checkpoints
def add_checkpoints(sub) -> None:
    p = sub.add_parser(
        "checkpoints", help="list the fits stored in a checkpoint folder",
        description="List the checkpointed fits in PATH (name, iteration, cost, last update), "
                    "or with --show print one store (PATH/NAME.zarr) as JSON.")
    p.add_argument("path", type=Path, metavar="PATH", help="checkpoint folder or NAME.zarr store")
    p.add_argument("--show", action="store_true",
                   help="print the store's state, configuration and fingerprint as JSON")
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.set_defaults(func=cmd_checkpoints)


def cmd_checkpoints(args) -> int:
    import json

    from nlsq_dask.engines.checkpoint import inspect_checkpoint, list_checkpoints
    from nlsq_dask.job_output import jsonable

    if not args.path.is_dir():
        raise FileNotFoundError(f"{str(args.path)!r} is not a checkpoint folder or store")
    if args.show:
        print(json.dumps(jsonable(inspect_checkpoint(args.path)), indent=2))
        return 0
    if args.path.name.endswith(".zarr"):  # one store: its row
        rows = [r for r in list_checkpoints(args.path.parent) if r["name"] == args.path.stem]
    else:
        rows = list_checkpoints(args.path)
    if args.json:
        print(json.dumps(jsonable(rows), indent=2))
        return 0
    if not rows:
        print(f"no checkpoints in {args.path}")
        return 0
    width = max(4, *(len(r["name"]) for r in rows))
    print(f"{'name':<{width}}  {'iteration':>9}  {'cost':>13}  updated")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<{width}}  damaged: {r['error']}")
            continue
        cost = "-" if r.get("cost") is None else f"{r['cost']:.6e}"
        it = "-" if r.get("iteration") is None else r["iteration"]
        print(f"{r['name']:<{width}}  {it:>9}  {cost:>13}  {r.get('updated') or '-'}")
    return 0


# ----------------------------------------------------------------------------- main
#: subparser registrations, in help order
COMMANDS = (add_demo, add_info, add_fit, add_checkpoints)


def build_parser() -> argparse.ArgumentParser:
    from nlsq_dask import __version__

    parser = argparse.ArgumentParser(
        prog="nlsq-dask",
        description="Out-of-core nonlinear least-squares curve fitting on dask, xarray and zarr.")
    parser.add_argument("--version", action="version", version=f"nlsq-dask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"nlsq-dask: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nlsq-dask: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
