"""Out-of-core fit of a signal stored in zarr.

Writes a zarr store of ``y = 2·exp(-0.5·t) + 0.3 + noise`` chunk by chunk (the signal is
never whole in memory), opens it lazily with dask and fits it with a STREAMING pass that
re-reads the store on every iteration. Then prints the result and, with ``--plot``,
saves the picture of the fit.

    python docs/examples/out_of_core_zarr.py                      # 10^7 points
    python docs/examples/out_of_core_zarr.py --points 200000 --workers 0 --plot fit.png

``--workers N`` starts a local dask cluster of N single-thread worker processes
(0: dask's threads in this process).
"""

import argparse
import os

import dask.array as da
import jax.numpy as jnp
import numpy as np
import zarr

import nlsq_dask


def model(t, a, b, c):
    return a * jnp.exp(-b * t) + c


def write_signal(path, n, chunk, seed=0):
    """A zarr group with arrays ``t`` and ``signal``, written one chunk at a time."""
    group = zarr.open_group(path, mode="w")
    t_arr = group.create_array("t", shape=(n,), chunks=(chunk,), dtype="f8")
    y_arr = group.create_array("signal", shape=(n,), chunks=(chunk,), dtype="f8")
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        t = 10.0 * np.arange(start, stop) / (n - 1)              # np.linspace(0, 10, n)[start:stop]
        t_arr[start:stop] = t
        y_arr[start:stop] = 2.0 * np.exp(-0.5 * t) + 0.3 + rng.normal(0.0, 0.05, stop - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--chunk", type=int, default=None, help="points per zarr chunk")
    ap.add_argument("--path", default="signal.zarr")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plot", default=None, help="save the picture of the fit to this file")
    args = ap.parse_args(argv)

    chunk = args.chunk or max(1, min(1_000_000, args.points // 8))
    if not os.path.exists(args.path):
        write_signal(args.path, args.points, chunk)

    t = da.from_zarr(args.path, component="t")        # lazy: nothing is read yet
    y = da.from_zarr(args.path, component="signal")

    client = None
    if args.workers > 0:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               dashboard_address=":0")
        client = Client(cluster)
    try:
        result = nlsq_dask.fit(model, t, y, p0=[2.5, 0.6, 0.2], tier="streaming",
                               client=client)
        print(result.summary())
        print(result.selection.explain())
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            result.plot(max_points=2000).savefig(args.plot, dpi=100)   # reads a subsample only
            print(f"saved {args.plot}")
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
