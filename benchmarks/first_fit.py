"""The first fit: a new process, import included, against scipy (and NLSQ when installed).

Run: ``python benchmarks/first_fit.py [--points 10000] [--repeats 3]``.

Every row but the last two is a fresh Python process timed from its start to the end of
one fit of the exponential model at ``--points`` points (best of ``--repeats``):

* ``scipy curve_fit``: import numpy and scipy, fit.
* ``nlsq_dask, cold cache``: an empty compilation cache (a new directory each repeat).
* ``nlsq_dask, warm cache``: the same directory again (what a second process sees).
* ``nlsq_dask, no cache``: ``NLSQ_COMPILATION_CACHE=0``.
* ``NLSQ curve_fit``, cold and warm: when ``nlsq`` is importable (NLSQ keeps a persistent
  compilation cache of its own, pointed at a new or a reused directory the same way).

Then, in one process: a redefined but identical model (a new closure each fit, as a
re-run notebook cell makes) after a first fit, and the resident memory over 20 such fits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from _common import machine, print_table

FIT = {
    "scipy": ("import numpy as np\nfrom scipy.optimize import curve_fit\n"
              "f = lambda x, a, b, c: a * np.exp(-b * x) + c\n"
              "curve_fit(f, x, y, p0=[2.5, 0.6, 0.2])\n"),
    "nlsq_dask": ("import jax.numpy as jnp\nimport nlsq_dask\n"
                  "f = lambda x, a, b, c: a * jnp.exp(-b * x) + c\n"
                  "nlsq_dask.fit(f, x, y, p0=[2.5, 0.6, 0.2])\n"),
    "nlsq": ("import jax.numpy as jnp\nfrom nlsq import curve_fit\n"
             "f = lambda x, a, b, c: a * jnp.exp(-b * x) + c\n"
             "curve_fit(f, x, y, p0=[2.5, 0.6, 0.2])\n"),
}
DATA = ("import numpy as np\nx = np.linspace(0, 10, {n})\n"
        "y = 2.0 * np.exp(-0.5 * x) + 0.3 + np.random.default_rng(0).normal(0, 0.05, {n})\n")

REDEFINED = """
import resource, time
import jax.numpy as jnp
import numpy as np
import nlsq_dask
x = np.linspace(0, 10, {n}); y = 2.0 * np.exp(-0.5 * x) + 0.3
def fresh():
    return lambda x, a, b, c: a * jnp.exp(-b * x) + c     # a new closure each call
nlsq_dask.fit(fresh(), x, y, p0=[2.5, 0.6, 0.2])
t0 = time.perf_counter(); nlsq_dask.fit(fresh(), x, y, p0=[2.5, 0.6, 0.2])
print("redefined", time.perf_counter() - t0)
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss()
for _ in range(20):
    nlsq_dask.fit(fresh(), x, y, p0=[2.5, 0.6, 0.2])
print("memory", before, rss())
"""


def run(code: str, env: dict) -> float:
    """Seconds from the start of a fresh ``python -c code`` to its end."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    data = DATA.format(n=args.points)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("NLSQ_", "JAX_COMPILATION_CACHE"))}
    base["JAX_PLATFORMS"] = os.environ.get("JAX_PLATFORMS", "cpu")
    times: dict[str, float] = {}

    def best(name, code, env_for):
        times[name] = min(run(code, env_for(i)) for i in range(args.repeats))

    def cold_and_warm(label, code, cache_variable):
        """A new cache directory each repeat, then one filled by a first run."""
        with tempfile.TemporaryDirectory() as tmp:
            best(f"{label}, cold cache", code,
                 lambda i: {**base, cache_variable: os.path.join(tmp, f"cold{i}")})
            warm = {**base, cache_variable: os.path.join(tmp, "warm")}
            run(code, warm)
            best(f"{label}, warm cache", code, lambda i: warm)

    best("scipy curve_fit", data + FIT["scipy"], lambda i: base)
    cold_and_warm("nlsq_dask", data + FIT["nlsq_dask"], "NLSQ_COMPILATION_CACHE")
    best("nlsq_dask, no cache", data + FIT["nlsq_dask"],
         lambda i: {**base, "NLSQ_COMPILATION_CACHE": "0"})
    try:
        import nlsq  # noqa: F401
    except ImportError:
        pass
    else:  # NLSQ has a persistent compilation cache of its own
        cold_and_warm("NLSQ curve_fit", data + FIT["nlsq"], "NLSQ_JAX_CACHE_DIR")
    out = subprocess.run([sys.executable, "-c", REDEFINED.format(n=args.points)], check=True,
                         env={**base, "NLSQ_COMPILATION_CACHE": "0"}, capture_output=True,
                         text=True).stdout.split("\n")
    redefined = float(next(line for line in out if line.startswith("redefined")).split()[1])
    mem0, mem1 = (float(v) for v in next(line for line in out
                                           if line.startswith("memory")).split()[1:])
    ours = times["nlsq_dask, cold cache"]
    rows = [[name, f"{t:.2f}", f"{t / ours:.2f}"] for name, t in times.items()]
    rows.append(["nlsq_dask, a redefined identical model (in process)", f"{redefined:.3f}", ""])
    rows.append(["nlsq_dask, peak RSS before -> after 20 new closures (MB)",
                 f"{mem0:.0f} -> {mem1:.0f}", ""])
    print_table(f"First fit at {args.points:,} points, a new process each "
                f"(best of {args.repeats}; {machine()})", ["case", "seconds", "/ cold ours"],
                rows)


if __name__ == "__main__":
    main()
