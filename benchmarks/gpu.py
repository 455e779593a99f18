"""GPU measurements (run on a machine with an NVIDIA GPU and JAX's CUDA build).

Run: ``python benchmarks/gpu.py [--out benchmarks/results]``. Writes
``gpu-<device>.txt`` with the device named, and prints:

(a) STANDARD fit of 10^7 points against NLSQ ``curve_fit`` warm on the same GPU;
(b) one float64 statistics pass over 10^8 device-resident points;
(c) a CHUNKED fit of 10^8 points through ``gpu_cluster`` with one GPU worker;
(d) per-pixel fits/s for 3 parameters × 50 points (the accessor's batched solver).
Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from _common import best_time, exp_data, print_table

import nlsq_dask

P0 = [2.5, 0.6, 0.2]


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def stats_pass(n: int, repeats: int = 10) -> float:
    from nlsq_dask.engines.partitions import tile_for
    from nlsq_dask.solver import ModelSpec, NormalStats, block_stats

    spec = ModelSpec(model, ("a", "b", "c"))
    tile = tile_for(n) if n < 65536 else 65536
    length = -(-n // tile) * tile
    x = jnp.linspace(0.0, 10.0, length)
    y = 2.0 * jnp.exp(-0.5 * x) + 0.3
    f = jax.jit(partial(block_stats, spec, "linear", NormalStats, tile))
    p = jnp.asarray(P0)
    jax.block_until_ready(f(p, (x,), y, None, n, 1.0))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(p, (x,), y, None, n, 1.0))
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--big", type=int, default=100_000_000)
    args = ap.parse_args(argv)
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        print("no GPU visible to JAX: nothing measured")
        return
    device = gpus[0].device_kind.replace(" ", "-")
    rows = []
    x, y = exp_data(args.points)
    nlsq_dask.fit(model, x, y, p0=P0)
    t, res = best_time(lambda: nlsq_dask.fit(model, x, y, p0=P0))
    rows.append(["(a) standard fit", f"{args.points:,}", f"{t * 1e3:.1f} ms", f"{res.nfev} passes"])
    try:
        import nlsq

        cf = nlsq.CurveFit()
        cf.curve_fit(model, x, y, p0=P0)
        t_nl, _ = best_time(lambda: cf.curve_fit(model, x, y, p0=P0))
        rows.append([f"(a) NLSQ {nlsq.__version__} curve_fit", f"{args.points:,}",
                     f"{t_nl * 1e3:.1f} ms", f"ours {t_nl / t:.1f}x faster"])
    except ImportError:
        rows.append(["(a) NLSQ", "-", "not installed", "-"])
    t_pass = stats_pass(args.big)
    rows.append(["(b) one statistics pass", f"{args.big:,}", f"{t_pass * 1e3:.2f} ms", "float64"])
    rows.extend(chunked_gpu_fit(args.big))
    rows.extend(per_pixel())
    text = print_table(f"GPU benchmarks on {gpus[0].device_kind}", ["what", "points", "time", "note"], rows)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"gpu-{device}.txt"), "w") as fh:
        fh.write(text + "\n")


def chunked_gpu_fit(n: int):
    import dask.array as da
    from distributed import Client

    from nlsq_dask.cluster import gpu_cluster

    chunk = n // 4
    xd = da.linspace(0, 10, n, chunks=chunk)
    yd = 2.0 * da.exp(-0.5 * xd) + 0.3
    with gpu_cluster(devices=["0"]) as cluster, Client(cluster) as client:
        xp, yp = client.persist([xd, yd])
        nlsq_dask.fit(model, xp[:chunk], yp[:chunk], p0=P0, tier="chunked", client=client)
        t0 = time.perf_counter()
        res = nlsq_dask.fit(model, xp, yp, p0=P0, tier="chunked", client=client)
        t = time.perf_counter() - t0
    return [["(c) chunked fit via gpu_cluster", f"{n:,}", f"{t:.2f} s",
             f"{res.nfev} passes, {t / res.nfev * 1e3:.0f} ms/pass"]]


def per_pixel(n_pixels: int = 1_048_576, n_points: int = 50):
    """Fits/s of the batched per-pixel solver, warm, data already on the device."""
    from nlsq_dask.solver.batched import batched_fit

    rng = np.random.default_rng(0)
    t = np.linspace(0, 5, n_points)
    a, b, c = (rng.uniform(1, 3, n_pixels), rng.uniform(0.3, 1.5, n_pixels), rng.uniform(0, .5, n_pixels))
    y = a * np.exp(-np.outer(t, b)) + c + rng.normal(0, 0.02, (n_points, n_pixels))
    p0 = np.tile(np.array([[2.0], [1.0], [0.2]]), (1, n_pixels))
    inf = np.full_like(p0, np.inf)

    def run():
        return batched_fit(model, 3, (t,), y, np.ones_like(y), p0, -inf, inf, tile=65536)

    run()
    secs, _ = best_time(run, 3)
    return [["(d) per-pixel fits, 3 params x 50 points", f"{n_pixels:,} pixels",
             f"{secs:.3f} s", f"{n_pixels / secs:,.0f} fits/s"]]


if __name__ == "__main__":
    main()
