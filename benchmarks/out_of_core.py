"""Out-of-core speed: STREAMING/CHUNKED fits against a plain dask pass of the same sums.

Run: ``python benchmarks/out_of_core.py [--points 100000000] [--chunk 500000]
[--path benchmarks/data/ooc.zarr] [--models exponential,gaussian,two-exp]
[--skip-cluster] [--skip-checkpoint] [--skip-passes] [--profile] [--partitions]``.

It writes (or reuses) a zarr store of float64 ``x`` and one ``y`` per model (16 bytes
a point for the first), then measures, on the same scheduler and in the same run:

* full-data passes: each model from its p0 with subset passes off (every pass reads
  all the data) and on (the default), in passes, full-pass equivalents and seconds;

* the *plain pass*: one ``dask.compute`` of the Gauss-Newton sums of the model
  written with dask.array (Σr², Σ J_i r, Σ J_i J_j) — the I/O + numpy floor;
* a STREAMING fit (re-reads zarr every pass) on threads and on 2-worker clusters —
  distributed's ``LocalCluster`` with its defaults and ours, ``local_cluster(2)`` — with
  checkpoints on, peak memory per worker, anything spilled and the bytes workers sent
  each other per pass;
* a CHUNKED fit (persisted partitions) against the plain pass over the persisted data;
* the checkpoint overhead: STREAMING_CHECKPOINT against STREAMING, per pass, with the
  time spent in checkpoint writes measured directly.

``--profile`` shows instead where a pass's time goes on threads and on the clusters
(CPU time, task stream, bytes between workers). ``--partitions`` measures instead one
pass over 10^6 points in 100 to 100,000 chunks against the plain dask pass over the
same chunks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import dask
import dask.array as da
import jax.numpy as jnp
import numpy as np
from _common import machine, print_table

import nlsq_dask

P0 = np.array([2.5, 0.6, 0.2])


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def gaussian(x, a, mu, s, c):
    return a * jnp.exp(-0.5 * ((x - mu) / s) ** 2) + c


def two_exp(x, a1, b1, a2, b2, c):
    return a1 * jnp.exp(-b1 * x) + a2 * jnp.exp(-b2 * x) + c


#: name: (model, truth, p0, zarr component of its y)
MODELS = {
    "exponential": (model, [2.0, 0.5, 0.3], P0, "y"),
    "gaussian": (gaussian, [1.5, 5.0, 1.2, 0.2], [1.0, 4.5, 1.5, 0.0], "y_gaussian"),
    "two-exp": (two_exp, [1.5, 2.0, 1.0, 0.3, 0.2], [1.0, 1.0, 1.0, 0.1, 0.0], "y_two_exp"),
}


def _model_dask(name, x):
    truth = MODELS[name][1]
    if name == "exponential":
        return truth[0] * da.exp(-truth[1] * x) + truth[2]
    if name == "gaussian":
        return truth[0] * da.exp(-0.5 * ((x - truth[1]) / truth[2]) ** 2) + truth[3]
    return truth[0] * da.exp(-truth[1] * x) + truth[2] * da.exp(-truth[3] * x) + truth[4]


def write_store(path: str, n: int, chunk: int, models=("exponential",)) -> None:
    """``x`` on ``[0, 10]`` and, per model, ``y = f(x) + N(0, 0.05)``, written chunk by
    chunk (a component already there with this length is kept)."""
    def present(component):
        try:
            return da.from_zarr(path, component=component).shape == (n,)
        except Exception:
            return False

    if os.path.exists(path) and not present("x"):
        shutil.rmtree(path)
    x = da.linspace(0, 10, n, chunks=chunk)
    if not present("x"):
        da.to_zarr(x, path, component="x")
    for i, name in enumerate(models):
        component = MODELS[name][3]
        if not present(component):
            noise = da.random.default_rng(i).normal(0, 0.05, size=n, chunks=chunk)
            da.to_zarr(_model_dask(name, x) + noise, path, component=component, overwrite=True)


def plain_sums(x, y, p):
    """The statistics of one pass written as plain dask.array reductions."""
    a, b, c = p
    e = da.exp(-b * x)
    r = a * e + c - y
    j = [e, -a * x * e, da.ones_like(x)]
    sums = [(r * r).sum()] + [(ji * r).sum() for ji in j]
    sums += [(j[i] * j[k]).sum() for i in range(3) for k in range(i, 3)]
    return sums


def time_plain(x, y, repeats=2, client=None):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sums = plain_sums(x, y, P0)
        client.compute(sums, sync=True) if client is not None else dask.compute(*sums)
        best = min(best, time.perf_counter() - t0)
    return best


def time_fit(x, y, fn=model, p0=P0, **kw):
    t0 = time.perf_counter()
    res = nlsq_dask.fit(fn, x, y, p0=p0, **kw)
    return time.perf_counter() - t0, res


def _warm(fn, p0, x, y, **kw):
    """Compile the kernels on a few partitions (not timed)."""
    n = x.chunks[0][0] * 16
    time_fit(x[:n], y[:n], fn, p0, **kw)


def run_section(label, x, y, rows, client=None, tier="streaming", **kw):
    _warm(model, P0, x, y, tier=tier, client=client)
    t_fit, res = time_fit(x, y, tier=tier, client=client, **kw)
    rows.append(fit_row(label, t_fit, res, time_plain(x, y, client=client)))
    return res


def fit_row(label, t_fit, res, plain):
    """A row of the fits table: the fit's time per full-pass equivalent against ``plain``."""
    per_pass = t_fit / res.equivalent_passes
    return [label, res.tier.value, f"{t_fit:.2f}", res.nfev, f"{res.equivalent_passes:.2f}",
            f"{per_pass:.3f}", f"{plain:.3f}", f"{per_pass / plain:.2f}"]


def passes_section(path, x, models):
    """Each model from its p0, subset passes off and on (threads, STREAMING)."""
    from nlsq_dask import WorkflowConfig

    rows = []
    for name in models:
        fn, truth, p0, component = MODELS[name]
        y = da.from_zarr(path, component=component)
        _warm(fn, p0, x, y, tier="streaming")
        results = {}
        for on in (False, True):
            t, res = time_fit(x, y, fn, p0, tier="streaming",
                              config=WorkflowConfig(subset_passes=on))
            results[on] = res
            levels = res.extras.get("subsets", {}).get("levels", [])
            rows.append([name, "on" if on else "off", res.nfev, res.n_passes,
                         f"{res.equivalent_passes:.2f}", f"{t:.2f}",
                         " ".join(f"{100 * lv['fraction']:.3g}%x{lv['passes']}" for lv in levels)
                         or "-"])
        off, on = results[False], results[True]
        rows[-1].append(f"{np.max(np.abs(on.popt - off.popt) / off.perr):.2g}")
        rows[-2].append(f"truth {np.round(truth, 3).tolist()}")
    print_table("full-data passes from p0, STREAMING on threads (subset passes off: every pass "
                "reads all the data)", ["model", "subsets", "nfev", "passes", "full-pass equiv",
                                       "total s", "subset levels (share x passes)",
                                       "|popt on - off| / perr"], rows)


class WorkerWatch:
    """Peak resident memory of each worker process, sampled while a fit runs."""

    def __init__(self, client, every=0.25):
        import threading

        self.client, self.every, self.peak = client, every, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self.stop.is_set():
            for addr, rss in self.client.run(lambda: psutil.Process().memory_info().rss).items():
                self.peak[addr] = max(self.peak.get(addr, 0), rss)
            self.stop.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def worker_counters(client, since: float = 0.0):
    """Per worker: (bytes spilled to disk, bytes received from other workers since the
    wall-clock time ``since``; the transfer log keeps the last 1,000 transfers)."""
    def counters(dask_worker):
        data = dask_worker.data
        spilled = int(data.spilled_total[1]) if hasattr(data, "spilled_total") else 0
        received = sum(t["total"] for t in dask_worker.transfer_incoming_log
                       if t["start"] >= since)
        return spilled, received

    return client.run(counters)


def cluster_section(x, y, rows, checkpoints: bool):
    """STREAMING (and CHUNKED) on 2-worker clusters: distributed's ``LocalCluster`` as a
    user starts it, and ours (``nlsq_dask.cluster.local_cluster``, which leaves glibc's
    adaptive ``mmap`` threshold on in the workers); memory, spills and transfers."""
    from distributed import Client

    for i, (label, make) in enumerate(two_worker_clusters().items()):
        with make() as cluster, Client(cluster) as client:
            limit = cluster_fit(label, x, y, rows, client, checkpoints)
            if i == 0 and x.nbytes + y.nbytes < 0.4 * 2 * limit:   # persisted where it fits
                xp, yp = client.persist([x, y])
                run_section(f"{label}, persisted", xp, yp, rows, client=client, tier="chunked")


def two_worker_clusters() -> dict:
    """``{label: a function that starts it}``: distributed's ``LocalCluster`` of two
    single-threaded worker processes as a user starts it, and ours."""
    from distributed import LocalCluster

    from nlsq_dask.cluster import local_cluster

    return {"LocalCluster 2x1": lambda: LocalCluster(n_workers=2, threads_per_worker=1,
                                                     processes=True, dashboard_address=":0"),
            "local_cluster(2)": lambda: local_cluster(n_workers=2)}


def cpu_seconds():
    """This process's (user, system) CPU seconds."""
    import psutil

    t = psutil.Process().cpu_times()
    return t.user, t.system


def profile_section(x, y):
    """Where a STREAMING pass's time goes (subset passes off, so every pass is alike):
    on threads and on the two 2-worker clusters, per pass, the wall time, the CPU time
    of the process(es) computing (user, system), the task stream's compute and transfer
    seconds, the tasks and the bytes workers received from each other."""
    from distributed import Client, get_task_stream

    from nlsq_dask import WorkflowConfig

    config = WorkflowConfig(subset_passes=False)
    _warm(model, P0, x, y, tier="streaming")
    c0 = cpu_seconds()
    t_fit, res = time_fit(x, y, tier="streaming", config=config)
    c1 = cpu_seconds()
    n = res.nfev
    rows = [["threads", f"{t_fit / n:.3f}", f"{(c1[0] - c0[0]) / n:.2f}",
             f"{(c1[1] - c0[1]) / n:.2f}", "-", "-", "-", "-"]]
    for label, make in two_worker_clusters().items():
        with make() as cluster, Client(cluster) as client:
            _warm(model, P0, x, y, tier="streaming", client=client)
            w0, start = client.run(cpu_seconds), time.time()
            with get_task_stream(client) as stream:
                t_fit, res = time_fit(x, y, tier="streaming", config=config, client=client)
            w1, moved = client.run(cpu_seconds), worker_counters(client, since=start)
        n = res.nfev
        spent = {"compute": 0.0, "transfer": 0.0}
        for record in stream.data:
            for part in record["startstops"]:
                if part["action"] in spent:
                    spent[part["action"]] += part["stop"] - part["start"]
        rows.append([label, f"{t_fit / n:.3f}",
                     f"{sum(w1[w][0] - w0[w][0] for w in w1) / n:.2f}",
                     f"{sum(w1[w][1] - w0[w][1] for w in w1) / n:.2f}",
                     f"{spent['compute'] / n:.2f}", f"{spent['transfer'] / n:.2f}",
                     f"{len(stream.data) / n:.0f}",
                     f"{sum(m[1] for m in moved.values()) / n / 1e6:.1f}"])
    print_table(f"where a STREAMING pass goes, {x.size:,} points in {x.numblocks[0]} partitions "
                f"({machine()})", ["scheduler", "s/pass", "CPU user s/pass", "CPU system s/pass",
                                    "task compute s/pass", "transfer s/pass", "tasks/pass",
                                    "MB between workers/pass"], rows)


def cluster_fit(label, x, y, rows, client, checkpoints: bool) -> int:
    """A STREAMING fit on ``client``'s cluster, its row, and a line on its workers'
    memory, spills and transfers; returns a worker's memory limit."""
    import tempfile

    limit = min(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
    _warm(model, P0, x, y, tier="streaming", client=client)
    before, start = worker_counters(client), time.time()
    with tempfile.TemporaryDirectory() as d, WorkerWatch(client) as watch:
        kw = dict(enable_checkpoints=True, checkpoint_dir=d) if checkpoints else {}
        t_fit, res = time_fit(x, y, tier="streaming", client=client, **kw)
    after = worker_counters(client, since=start)
    rows.append(fit_row(f"{label}, zarr" + (" + checkpoints" if checkpoints else ""),
                        t_fit, res, time_plain(x, y, client=client)))
    spilled = sum(after[w][0] - before[w][0] for w in after)
    sent = sum(after[w][1] for w in after) / max(res.n_passes, 1)
    peaks = ", ".join(f"{v / 2**20:.0f}" for v in watch.peak.values())
    print(f"{label}: peak RSS per worker {peaks} MiB (limit {limit / 2**20:.0f} MiB), "
          f"spilled {spilled} bytes, sent between workers {sent / 1e6:.1f} MB per pass",
          flush=True)
    return limit


def partitions_section(n=1_000_000, counts=(100, 1_000, 20_000, 100_000), plain_limit=120):
    """One STREAMING pass over ``n`` points in many chunks against the plain dask pass,
    and the whole fit (default tier) over the same chunks. Once the plain pass has not
    finished in ``plain_limit`` seconds it is not run for more chunks."""
    rows, plain_gave_up = [], False
    x0, y0 = _common_exp(n)
    for count in counts:
        x = da.from_array(x0, chunks=n // count)
        y = da.from_array(y0, chunks=n // count)
        runner = _pass_runner(x, y)
        t0 = time.perf_counter()
        runner(P0)                                    # compile; the reads' plan
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        runner(P0)
        ours = time.perf_counter() - t0
        t_fit, res = time_fit(x, y)
        plain = None if plain_gave_up else plain_with_limit(x0, y0, n // count, plain_limit)
        if plain is not None:
            plain_s, ratio = f"{plain:.2f}", f"{ours / plain:.3f}"
        elif not plain_gave_up:
            plain_s, ratio, plain_gave_up = f"> {plain_limit}", f"< {ours / plain_limit:.3f}", True
        else:
            plain_s, ratio = "not run", "-"
        rows.append([f"{count:,}", f"{n // count:,}", runner.n_units, f"{first:.2f}",
                     f"{ours:.3f}", plain_s, ratio,
                     f"{t_fit:.2f} ({res.tier.value}, {res.equivalent_passes:.2f} passes)"])
    print_table(f"one pass over {n:,} points in many chunks, threads ({machine()})",
                ["chunks", "points each", "tasks (units)", "first pass s (plan, compile)",
                 "our pass s", "plain dask pass s", "ours / plain", "fit s (default tier)"], rows)


def plain_with_limit(x0, y0, chunk: int, limit: float):
    """Seconds of one plain pass over ``x0, y0`` in chunks of ``chunk``, timed in a child
    process that is stopped after ``limit`` seconds (then None), so a pass dask cannot
    finish does not run on beside the next measurements."""
    import multiprocessing
    import queue as queues

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_plain_child, args=(x0, y0, chunk, queue), daemon=True)
    child.start()
    try:
        return queue.get(timeout=limit)
    except queues.Empty:
        return None
    finally:
        child.terminate()
        child.join()


def _plain_child(x0, y0, chunk, queue):
    x, y = da.from_array(x0, chunks=chunk), da.from_array(y0, chunks=chunk)
    queue.put(time_plain(x, y, repeats=1))


def _common_exp(n):
    from _common import exp_data

    return exp_data(n)


def _pass_runner(x, y):
    """The engine's pass runner for a STREAMING pass of the exponential over x, y."""
    from nlsq_dask.engines.dask_engine import PassRunner
    from nlsq_dask.engines.data import prepare_inputs
    from nlsq_dask.solver import ModelSpec
    from nlsq_dask.solver.problem import Problem
    from nlsq_dask.workflow import WorkflowConfig

    inputs = prepare_inputs(x, y, None)
    spec = ModelSpec(model, ("a", "b", "c"), inputs.x_form, inputs.n_inputs)
    return PassRunner(Problem(spec), (x, y), n_x=inputs.n_inputs,
                      split_every=WorkflowConfig().split_every)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=float, default=1e8)
    ap.add_argument("--chunk", type=int, default=500_000)
    ap.add_argument("--path", default=os.path.join(os.path.dirname(__file__), "data", "ooc.zarr"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--skip-cluster", action="store_true")
    ap.add_argument("--skip-checkpoint", action="store_true")
    ap.add_argument("--skip-passes", action="store_true",
                    help="leave out the subset-passes-off/on table")
    ap.add_argument("--profile", action="store_true",
                    help="only where a pass's time goes on threads and on 2-worker clusters")
    ap.add_argument("--partitions", action="store_true",
                    help="only the pass over many small chunks against the plain dask pass")
    args = ap.parse_args(argv)
    if args.partitions:
        return partitions_section()
    n = int(args.points)
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(MODELS)
    if unknown:
        raise SystemExit(f"--models: unknown {sorted(unknown)}; choose from {list(MODELS)}")
    os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
    t0 = time.perf_counter()
    write_store(args.path, n, args.chunk, ["exponential", *models])
    print(f"store {args.path}: {n:,} points ({n * 16 / 1e9:.2f} GB of x and y), "
          f"ready in {time.perf_counter() - t0:.1f} s ({machine()})", flush=True)
    x, y = da.from_zarr(args.path, component="x"), da.from_zarr(args.path, component="y")
    if args.profile:
        return profile_section(x, y)
    if not args.skip_passes:
        passes_section(args.path, x, models)
    rows = []
    header = ["run", "tier", "total s", "nfev", "full-pass equiv", "s per equiv pass",
              "plain pass s", "pass / plain"]
    res = run_section("threads, zarr", x, y, rows)
    if not args.skip_cluster:
        cluster_section(x, y, rows, checkpoints=not args.skip_checkpoint)
    if n * 16 < 0.4 * _memory_bytes():
        xp, yp = dask.persist(x, y)
        run_section("threads, persisted", xp, yp, rows, tier="chunked")
        del xp, yp
    print_table(f"out-of-core fit of a*exp(-b*x)+c, {n:,} points, chunks of "
                f"{x.chunks[0][0]:,} ({machine()})", header, rows)
    print(f"popt = {res.popt.tolist()}  (truth [2.0, 0.5, 0.3])")

    if not args.skip_checkpoint:
        checkpoint_overhead(x, y)


def _memory_bytes() -> int:
    import psutil

    return psutil.virtual_memory().total


def checkpoint_overhead(x, y):
    """STREAMING_CHECKPOINT vs STREAMING on threads; store writes timed directly."""
    from nlsq_dask.engines import checkpoint as ck

    spent = {"s": 0.0}

    def timed(fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent["s"] += time.perf_counter() - t0
        return wrapper

    originals = {m: getattr(ck.CheckpointStore, m) for m in ("save_state", "save_partition",
                                                             "clear_passes")}
    for m, fn in originals.items():
        setattr(ck.CheckpointStore, m, timed(fn))
    try:
        t_plain, res_plain = time_fit(x, y, tier="streaming")
        with tempfile.TemporaryDirectory() as d:
            t_ck, res_ck = time_fit(x, y, tier="streaming", enable_checkpoints=True, checkpoint_dir=d)
    finally:
        for m, fn in originals.items():
            setattr(ck.CheckpointStore, m, fn)
    per_pass = t_plain / res_plain.equivalent_passes
    ck_pass, writes = t_ck / res_ck.equivalent_passes, spent["s"] / res_ck.equivalent_passes
    rows = [["streaming", res_plain.nfev, f"{t_plain:.2f}", f"{per_pass:.3f}", "-", "-"],
            ["streaming_checkpoint", res_ck.nfev, f"{t_ck:.2f}", f"{ck_pass:.3f}",
             f"{writes:.4f}", f"{100 * writes / per_pass:.2f}%"]]
    print_table("checkpoint overhead per pass (threads)",
                ["tier", "nfev", "total s", "s per equiv pass", "checkpoint writes s/pass",
                 "of a pass"], rows)
    print(f"end-to-end difference per pass: "
          f"{100 * (ck_pass - per_pass) / per_pass:+.1f}% (includes run-to-run noise); "
          f"popt equal: {np.array_equal(res_plain.popt, res_ck.popt)}")


if __name__ == "__main__":
    main()
