"""Draw the pictures of the documentation into docs/images/ (run from anywhere).

    pip install ".[plot]" && python docs/make_images.py

Small sizes, a few seconds on a laptop; the data are synthetic and seeded, so the
pictures change only when the plotting code does.
"""

import os
import sys

import matplotlib

matplotlib.use("Agg")

import dask.array as da  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import nlsq_dask  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "examples"))
from per_pixel_cube import write_cube  # noqa: E402

OUT = os.path.join(HERE, "images")  # replaced by --out
DPI = 100


def save(fig, name):
    fig.savefig(os.path.join(OUT, name), dpi=DPI)
    plt.close(fig)


def model(t, a, b, c):
    return a * jnp.exp(-b * t) + c


def fit_picture():
    """A streaming fit of 10^6 lazy points; the plot computes a 2,000-point subsample."""
    n, chunk = 1_000_000, 125_000
    t = da.linspace(0.0, 10.0, n, chunks=chunk)
    y = 2.0 * da.exp(-0.5 * t) + 0.3 + da.random.default_rng(0).normal(0, 0.05, n, chunks=chunk)
    result = nlsq_dask.fit(model, t, y, p0=[2.5, 0.6, 0.2], tier="streaming")
    save(result.plot(max_points=2000), "fit.png")
    save(result.plot(max_points=200, how="bin"), "fit-binned.png")


def map_picture(tmp):
    import xarray as xr

    path = os.path.join(tmp, "cube.zarr")
    write_cube(path, 64)
    ds = xr.open_zarr(path, consolidated=False)
    fitted = ds[["signal"]].nlsq.fit("t", model, p0={"a": 1.5, "b": 0.5, "c": 0.0},
                                     bounds={"b": (0.0, 5.0)})
    artist = fitted.nlsq.plot_map("b", cmap="viridis")
    save(artist.axes.figure, "map.png")
    artist = fitted.nlsq.plot_map("b", error=True, cmap="magma")
    save(artist.axes.figure, "map-error.png")
    # The status: the same cube seen through a round aperture (NaN outside it)
    yy, xx = np.meshgrid(ds.y, ds.x, indexing="ij")
    r = np.hypot(yy - yy.mean(), xx - xx.mean())
    masked = ds[["signal"]].where(xr.DataArray(r <= 0.53 * len(ds.x), dims=("y", "x")))
    fitted = masked.nlsq.fit("t", model, p0={"a": 1.5, "b": 0.5, "c": 0.0},
                             bounds={"b": (0.0, 5.0)}, skipna=True, errors="ignore")
    artist = fitted.nlsq.plot_map("status")
    save(artist.axes.figure, "map-status.png")


def main(argv=None):
    import argparse
    import tempfile

    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT, help="folder for the PNG files")
    OUT = ap.parse_args(argv).out
    os.makedirs(OUT, exist_ok=True)
    fit_picture()
    with tempfile.TemporaryDirectory() as tmp:
        map_picture(tmp)
    for name in sorted(os.listdir(OUT)):
        print(f"{os.path.join(OUT, name)}: {os.path.getsize(os.path.join(OUT, name)):,} bytes")


if __name__ == "__main__":
    main()
