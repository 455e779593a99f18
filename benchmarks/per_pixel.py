"""Per-pixel fits: ``ds.nlsq.fit`` against ``xarray.Dataset.curvefit``.

    python benchmarks/per_pixel.py [--sizes 64 256] [--points 50] [--repeats 3]

Exponential decay ``a·exp(-b·t) + c`` with noise on an ``n × n`` image of ``--points``
samples each. nlsq is timed warm (after one call that compiles), as the best of
``--repeats`` runs, on the numpy data and on the same data chunked with dask (one
block per core). xarray's curvefit runs scipy once per pixel; for large images it is
timed on a random subset of pixels and its rate extrapolated (marked ``*``).
Both use the same tolerances (scipy's defaults, 1e-8) unless ``--adaptive``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import xarray as xr

import nlsq_dask.accessor  # noqa: F401  (registers .nlsq)


def model(t, a, b, c):
    import jax.numpy as jnp
    return a * jnp.exp(-b * t) + c


def np_model(t, a, b, c):
    return a * np.exp(-b * t) + c


def make_data(n: int, n_points: int, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 5.0, n_points)
    a = rng.uniform(1.0, 3.0, (n, n))
    b = rng.uniform(0.5, 2.0, (n, n))
    c = rng.uniform(-0.5, 0.5, (n, n))
    y = a[..., None] * np.exp(-b[..., None] * t) + c[..., None]
    y = y + 0.02 * rng.standard_normal(y.shape)
    return xr.Dataset({"signal": (("y", "x", "t"), y)}, coords={"t": t})


def best_of(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best CPU time (all threads) of ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--curvefit-max-pixels", type=int, default=4096,
                    help="time curvefit on at most this many random pixels")
    ap.add_argument("--adaptive", action="store_true",
                    help="nlsq's adaptive tolerances (1e-12 for 50 points) instead of 1e-8")
    args = ap.parse_args(argv)
    p0 = {"a": 1.0, "b": 1.0, "c": 0.0}
    tol = {} if args.adaptive else dict(ftol=1e-8, xtol=1e-8, gtol=1e-8)
    cores = os.cpu_count() or 1

    rows = []
    for n in args.sizes:
        ds = make_data(n, args.points)
        n_pix = n * n
        chunked = ds.chunk({"y": -(-n // cores), "x": -1, "t": -1})

        def run_numpy():
            return ds.nlsq.fit("t", model, p0=p0, **tol).compute()

        def run_dask():
            return chunked.nlsq.fit("t", model, p0=p0, **tol).compute(scheduler="threads")

        t_cold = best_of(run_numpy, 1)[0]
        res = run_numpy()
        run_dask()
        t_np = best_of(run_numpy, args.repeats)
        t_dask = best_of(run_dask, args.repeats)

        m = min(n_pix, args.curvefit_max_pixels)
        if m < n_pix:
            rng = np.random.default_rng(1)
            iy, ix = np.unravel_index(rng.choice(n_pix, m, replace=False), (n, n))
            sub = ds.isel(y=xr.DataArray(iy, dims="pix"), x=xr.DataArray(ix, dims="pix"))
        else:
            sub = ds
        t0, c0 = time.perf_counter(), time.process_time()
        ref = sub.curvefit("t", np_model, p0=p0)
        t_cf, c_cf = time.perf_counter() - t0, time.process_time() - c0
        cf_rate = m / t_cf

        mine = res.signal_curvefit_coefficients
        if m < n_pix:
            mine = mine.isel(y=xr.DataArray(iy, dims="pix"), x=xr.DataArray(ix, dims="pix"))
        diff = float(np.nanmax(np.abs(mine.values - ref.signal_curvefit_coefficients.values)))
        converged = int((res.signal_curvefit_status.values > 0).sum())
        for label, (t, c) in (("nlsq numpy", t_np), ("nlsq dask", t_dask)):
            rows.append((f"{n}x{n}", label, t, n_pix / t, (n_pix / t) / cf_rate, n_pix / c,
                         (n_pix / c) / (m / c_cf)))
        rows.append((f"{n}x{n}", "xarray.curvefit" + ("*" if m < n_pix else ""), n_pix / cf_rate,
                     cf_rate, 1.0, m / c_cf, 1.0))
        rows.append((f"{n}x{n}", f"(first call incl. compile {t_cold:.2f} s; converged "
                     f"{converged}/{n_pix}; max |Δcoef| vs curvefit {diff:.1e})",) + (None,) * 5)

    print(f"\nper-pixel fits, {args.points} points each, a*exp(-b*t)+c, float64, "
          f"{cores} CPU core(s); tolerances {'adaptive' if args.adaptive else '1e-8 (scipy)'}\n")
    print(f"{'pixels':>9}  {'method':<20} {'time [s]':>9} {'fits/s':>12} {'× curvefit':>11}"
          f" {'fits/CPU-s':>12} {'× (CPU)':>9}")
    for size, label, t, rate, ratio, crate, cratio in rows:
        if t is None:
            print(f"{'':>9}  {label}")
        else:
            print(f"{size:>9}  {label:<20} {t:9.3f} {rate:12,.0f} {ratio:11.1f} {crate:12,.0f}"
                  f" {cratio:9.1f}")
    print("\nfits/CPU-s counts CPU seconds of all threads: on a shared, loaded machine it is the "
          "steadier figure;\nfits/s (wall) on an idle machine is about fits/CPU-s x cores used.")
    if any(r[1].endswith("*") for r in rows):
        print(f"\n* curvefit timed on {args.curvefit_max_pixels} random pixels; "
              "time and fits/s extrapolated to the whole image.")


if __name__ == "__main__":
    main()
