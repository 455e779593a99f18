"""A YAML-driven cluster job: ``nlsq-dask fit fit-config.yaml`` on a local dask cluster.

Copies ``fit-config.yaml`` (next to this script) into a work folder, writes the zarr data
it names (``signal.zarr``: arrays ``t`` and ``counts``), adds a ``cluster`` section that
starts ``--workers`` local worker processes (0: no section, dask's threads), runs the
job exactly as the command line does and reads back ``result.json`` and ``result.zarr``.

    python docs/examples/cluster_job.py --dir job --workers 2
    # the same by hand:  nlsq-dask fit job/fit-config.yaml

On a PBS or SLURM machine, replace the cluster section by e.g.
``{type: pbs, nodes: 4, gpus_per_node: 2, walltime: "02:00:00"}`` (needs
``pip install "nlsq-dask[hpc]"``), or pass ``--address tcp://scheduler:8786``.
"""

import argparse
import json
import os
import shutil

import numpy as np
import yaml
import zarr

from nlsq_dask import cli

HERE = os.path.dirname(os.path.abspath(__file__))


def write_data(path, n, chunk, seed=3):
    group = zarr.open_group(path, mode="w")
    t_arr = group.create_array("t", shape=(n,), chunks=(chunk,), dtype="f8")
    y_arr = group.create_array("counts", shape=(n,), chunks=(chunk,), dtype="f8")
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        t = 10.0 * np.arange(start, stop) / (n - 1)
        t_arr[start:stop] = t
        y_arr[start:stop] = 2.0 * np.exp(-0.5 * t) + 0.3 + rng.normal(0.0, 0.05, stop - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="cluster-job", help="work folder (created)")
    ap.add_argument("--points", type=int, default=2_000_000)
    ap.add_argument("--workers", type=int, default=2, help="local worker processes (0: none)")
    ap.add_argument("--quiet", action="store_true", help="warnings only (no progress log)")
    args = ap.parse_args(argv)

    os.makedirs(args.dir, exist_ok=True)
    config = os.path.join(args.dir, "fit-config.yaml")
    shutil.copy(os.path.join(HERE, "fit-config.yaml"), config)
    with open(config) as fh:
        job = yaml.safe_load(fh)
    if args.workers > 0:
        job["cluster"] = {"type": "local", "n_workers": args.workers, "threads_per_worker": 1}
        # Data this small would fit in memory (tier standard); run the passes on the workers.
        job["fit"]["tier"] = "chunked"
        with open(config, "w") as fh:
            yaml.safe_dump(job, fh, sort_keys=False)

    chunk = int(job["data"].get("chunks") or 20_000)
    write_data(os.path.join(args.dir, job["data"]["path"]), args.points, chunk)

    status = cli.main(["fit", config] + (["-q"] if args.quiet else []))   # = `nlsq-dask fit <config>`
    out = os.path.join(args.dir, job["output"])
    with open(os.path.join(out, "result.json")) as fh:
        res = json.load(fh)
    stored = zarr.open_group(os.path.join(out, "result.zarr"), mode="r")
    print(f"exit status {status}; tier {res['tier']}; {res['nfev']} passes")
    print("popt from result.json:", {k: round(v, 4) for k, v in zip(res["param_names"], res["popt"])})
    print("popt from result.zarr:", np.round(stored["popt"][:], 4).tolist())
    return status


if __name__ == "__main__":
    raise SystemExit(main())
