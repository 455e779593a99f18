"""Checkpointed fits on a file system that fills up, run by the fault tests.

    unshare -rm sh -c 'mount -t tmpfs -o size=1m tmpfs DIR && python ckpt_disk_full.py DIR'

DIR is a small, real file system (a tmpfs in a private mount namespace). The script

1. fits with a pass budget of 2 (a store with states, stopped before convergence);
2. fills DIR with a ballast file until the file system is full, less two pages (for the
   lock file and the configuration);
3. resumes the fit: a state write fails (ENOSPC);
4. starts a fit into a new store: its first write fails, and no store is left;
5. deletes the ballast and resumes: the fit finishes from the last complete state.

The last line of stdout is a JSON object of what happened (errors as their messages).
"""
import json
import os
import sys
import warnings


def expdecay(x, a, k, c):
    import jax.numpy as jnp

    return a * jnp.exp(-k * x) + c


def main(root):
    import dask
    import dask.array as da
    import numpy as np

    import nlsq_dask

    x = np.linspace(0.0, 10.0, 4000)
    y = 3.0 * np.exp(-0.7 * x) + 0.5 + 0.01 * np.random.default_rng(3).standard_normal(x.size)

    def fit(name, **kw):
        with dask.config.set(scheduler="threads"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nlsq_dask.fit(expdecay, da.from_array(x, chunks=1000),
                                 da.from_array(y, chunks=1000), p0=[1.0, 0.1, 0.0],
                                 tier="streaming", enable_checkpoints=True, checkpoint_dir=root,
                                 checkpoint_name=name, **kw)

    def error_of(name, **kw):
        try:
            fit(name, **kw)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            return f"{type(exc).__name__}: {exc}"
        return None

    out = {"budget_nfev": int(fit("decay", max_nfev=2).nfev)}
    ballast = os.path.join(root, "ballast")
    with open(ballast, "wb", buffering=0) as f:
        try:
            for size in (1 << 16, 1 << 12, 1):
                while True:
                    f.write(b"\0" * size)
        except OSError as exc:
            out["ballast_error"] = exc.errno
    # two pages: room for the lock file and a rewrite of the configuration, none for a state
    os.truncate(ballast, os.path.getsize(ballast) - 2 * os.sysconf("SC_PAGE_SIZE"))
    out["resume_error"] = error_of("decay")
    out["new_store_error"] = error_of("other")
    out["entries_after_failures"] = sorted(os.listdir(root))
    os.remove(ballast)
    r = fit("decay")
    out.update(popt=[float(v) for v in r.popt], nfev=int(r.nfev), status=int(r.status),
               checkpoint=r.extras["checkpoint"])
    r = fit("other")
    out["other_resumed"] = r.extras["checkpoint"]["resumed"]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
