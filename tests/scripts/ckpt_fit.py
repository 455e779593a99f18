"""Checkpointed STREAMING fit of a zarr-backed dataset, run as a subprocess by the fault-tolerance tests.

    python ckpt_fit.py --data DATA.zarr --ckpt-dir DIR --out RESULT.json [--flush-seconds S]

``DATA.zarr`` holds arrays ``x`` and ``y`` (written by the test). Every pass is logged on stdout
('pass N | ...', the ``nlsq_dask`` logger at INFO), so a test can SIGKILL this process at a chosen
pass; a rerun resumes from ``DIR/expdecay.zarr``. The result (popt, nfev, extras) is written as JSON
to ``--out`` only when the fit finishes. ``--flush-seconds 0`` stores every finished partition at
once (the engine batches them by default), so a kill mid-pass leaves finished partitions to reuse.
``--wait-for FILE`` holds the fit after its first pass until FILE exists (a second writer's test).
"""
import argparse
import json
import logging
import os
import sys


def expdecay(x, a, k, c):
    import jax.numpy as jnp

    return a * jnp.exp(-k * x) + c


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--flush-seconds", type=float, default=None,
                    help="store finished partitions at most this often (default: the engine's)")
    ap.add_argument("--wait-for", default=None,
                    help="after the first pass, wait until this file exists")
    args = ap.parse_args(argv)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("nlsq_dask")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if args.wait_for:
        import time

        class Hold(logging.Handler):
            held = False

            def emit(self, record):
                if not self.held and record.getMessage().startswith("pass "):
                    self.held = True
                    print("HOLDING", flush=True)
                    while not os.path.exists(args.wait_for):
                        time.sleep(0.05)

        log.addHandler(Hold())

    import dask
    import dask.array as da

    import nlsq_dask
    from nlsq_dask.engines import dask_engine

    if args.flush_seconds is not None:  # 0: every finished partition is stored at once
        dask_engine.FLUSH_SECONDS = args.flush_seconds
    x = da.from_zarr(os.path.join(args.data, "x"))
    y = da.from_zarr(os.path.join(args.data, "y"))
    print(f"START pid={os.getpid()} n={x.shape[0]} partitions={x.numblocks[0]}", flush=True)
    with dask.config.set(scheduler="threads"):
        r = nlsq_dask.fit(expdecay, x, y, p0=[1.0, 0.1, 0.0], tier="streaming",
                          enable_checkpoints=True, checkpoint_dir=args.ckpt_dir,
                          checkpoint_fresh=args.fresh)
    out = {"popt": [float(v) for v in r.popt], "nfev": int(r.nfev), "status": int(r.status),
           "tier": r.tier.value, "extras": r.extras}
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f)
    os.replace(tmp, args.out)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
