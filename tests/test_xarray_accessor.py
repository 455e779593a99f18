"""ds.nlsq.fit: curvefit parity, NaNs, DataArray p0/bounds, errors, global fits, laziness."""

import numpy as np
import pytest
import xarray as xr

import nlsq_dask
import nlsq_dask.accessor  # noqa: F401  (registers the accessor)

import jax.numpy as jnp

TIGHT = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)


def expo(t, a, b, c):
    return a * jnp.exp(-b * t) + c


def np_expo(t, a, b, c):
    return a * np.exp(-b * t) + c


P0 = {"a": 1.0, "b": 1.0, "c": 0.0}


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(7)
    ny, nx, n = 4, 5, 40
    t = np.linspace(0.0, 4.0, n)
    a, b, c = (rng.uniform(lo, hi, (ny, nx)) for lo, hi in ((1, 3), (0.5, 2), (-0.5, 0.5)))
    y = a[..., None] * np.exp(-b[..., None] * t) + c[..., None]
    y = y + 0.02 * rng.standard_normal(y.shape)
    return xr.Dataset({"sig": (("y", "x", "t"), y), "other": (("y", "x", "t"), 2 * y)},
                      coords={"t": t}, attrs={"title": "cube"})


@pytest.fixture(scope="module")
def reference(cube):
    return cube.curvefit("t", np_expo, p0=P0, kwargs=TIGHT)


def close(a, b, tol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_parity_with_curvefit_several_variables(cube, reference):
    out = cube.nlsq.fit("t", expo, p0=P0, **TIGHT)
    for v in ("sig", "other"):
        close(out[f"{v}_curvefit_coefficients"], reference[f"{v}_curvefit_coefficients"])
        close(out[f"{v}_curvefit_covariance"], reference[f"{v}_curvefit_covariance"], 1e-5)
        assert (out[f"{v}_curvefit_status"] > 0).all()
        assert out[f"{v}_curvefit_cost"].dims == ("y", "x")
    assert out.sig_curvefit_coefficients.dims == ("y", "x", "param")
    assert out.sig_curvefit_covariance.dims == ("y", "x", "cov_i", "cov_j")
    assert list(out.param.values) == ["a", "b", "c"]
    assert out.attrs == {"title": "cube"}


def test_chunked_is_lazy_and_equal(cube, reference, tmp_path):
    chunked = cube.chunk({"y": 2, "x": 3, "t": 10})
    out = chunked.nlsq.fit("t", expo, p0=P0, **TIGHT)
    assert out.sig_curvefit_coefficients.chunks is not None          # lazy
    out[["sig_curvefit_coefficients", "sig_curvefit_status"]].to_zarr(tmp_path / "r.zarr")
    back = xr.open_zarr(tmp_path / "r.zarr")
    close(back.sig_curvefit_coefficients, reference.sig_curvefit_coefficients)


def test_dataarray_no_prefix_and_single_pixel_fit(cube):
    da = cube.sig
    out = da.nlsq.fit("t", expo, p0=P0, **TIGHT)
    assert set(out.data_vars) == {"curvefit_coefficients", "curvefit_covariance",
                                  "curvefit_status", "curvefit_cost"}
    res = nlsq_dask.fit(expo, da.t.values, da.isel(y=1, x=2).values, p0=[1, 1, 0], **TIGHT)
    close(out.curvefit_coefficients.isel(y=1, x=2), res.popt)


def test_nans_skipna_and_errors(cube):
    da = cube.sig.copy()
    da[0, 0, 3:7] = np.nan
    da[1, 1, :] = np.nan
    out = da.nlsq.fit("t", expo, p0=P0, **TIGHT)
    ref = da.curvefit("t", np_expo, p0=P0, kwargs=TIGHT)
    close(out.curvefit_coefficients.isel(y=0, x=0), ref.curvefit_coefficients.isel(y=0, x=0))
    assert np.isnan(out.curvefit_coefficients.isel(y=1, x=1)).all()
    assert int(out.curvefit_status.isel(y=1, x=1)) == -1
    with pytest.raises(RuntimeError):
        da.nlsq.fit("t", expo, p0=P0, skipna=False).compute()
    ign = da.nlsq.fit("t", expo, p0=P0, skipna=False, errors="ignore")
    assert np.isnan(ign.curvefit_coefficients.isel(y=0, x=0)).all()
    assert np.isfinite(ign.curvefit_coefficients.isel(y=2, x=2)).all()
    with pytest.raises(RuntimeError, match="maximum number"):
        cube.sig.nlsq.fit("t", expo, p0=P0, max_nfev=2)
    ign = cube.sig.nlsq.fit("t", expo, p0=P0, max_nfev=2, errors="ignore")
    assert np.isnan(ign.curvefit_coefficients).all() and (ign.curvefit_status == 0).all()


def test_dataarray_p0_and_bounds(cube):
    da = cube.sig
    p0 = {"a": xr.DataArray(np.linspace(1, 2, 4), dims="y"), "b": 1.0}
    bounds = {"c": (xr.DataArray(np.full(5, -0.1), dims="x"), 0.1)}
    out = da.nlsq.fit("t", expo, p0=p0, bounds=bounds, **TIGHT)
    ref = da.curvefit("t", np_expo, p0=p0, bounds=bounds, kwargs=TIGHT)
    close(out.curvefit_coefficients, ref.curvefit_coefficients, 1e-5)
    assert (out.curvefit_coefficients.sel(param="c") >= -0.1 - 1e-12).all()
    with pytest.raises(ValueError, match="unexpected dimensions"):
        da.nlsq.fit("t", expo, p0={"a": xr.DataArray([1.0] * 40, dims="t")})


def test_multi_d_coords_and_reduce_dims():
    rng = np.random.default_rng(1)
    xx, yy = np.meshgrid(np.linspace(-1, 1, 12), np.linspace(-1, 1, 10))
    frames = np.stack([2 * xx - yy + k + 0.01 * rng.standard_normal(xx.shape) for k in range(3)])
    da = xr.DataArray(frames, dims=("frame", "v", "u"),
                      coords={"xc": (("v", "u"), xx), "yc": (("v", "u"), yy)})

    def plane(x, a, b, c):
        return a * x[0] + b * x[1] + c

    out = da.nlsq.fit(["xc", "yc"], plane, reduce_dims=["v", "u"], **TIGHT)
    ref = da.curvefit(["xc", "yc"], lambda x, a, b, c: a * x[0] + b * x[1] + c,
                      reduce_dims=["v", "u"], kwargs=TIGHT)
    close(out.curvefit_coefficients, ref.curvefit_coefficients)
    assert out.curvefit_coefficients.dims == ("frame", "param")


def test_global_fit_across_chunks(cube):
    chunked = cube.sig.chunk({"y": 2, "x": 2, "t": 15})
    out = chunked.nlsq.fit("t", expo, reduce_dims=["y", "x"], p0=P0, **TIGHT)
    # dask data: lazy like every xarray result; the fit runs on compute (issue 17)
    assert all(out[v].chunks is not None for v in out.data_vars)
    out = out.compute()
    ref = cube.sig.curvefit("t", np_expo, reduce_dims=["y", "x"], p0=P0, kwargs=TIGHT)
    close(out.curvefit_coefficients, ref.curvefit_coefficients)
    close(out.curvefit_covariance, ref.curvefit_covariance, 1e-5)
    assert int(out.curvefit_status) > 0 and float(out.curvefit_cost) > 0
    eager = cube.sig.nlsq.fit("t", expo, reduce_dims=["y", "x"], p0=P0, **TIGHT)
    close(eager.curvefit_coefficients, ref.curvefit_coefficients)
    attrs = eager.curvefit_coefficients.attrs     # numpy data: fitted now, with diagnostics
    assert attrs["nlsq_tier"] in {"standard", "chunked", "streaming"}
    assert attrs["nlsq_nfev"] > 0 and "tier" in attrs["nlsq_explanation"]


def test_lazy_global_fit_runs_on_compute_and_on_a_cluster(cube, tmp_path):
    from distributed import Client, LocalCluster

    chunked = cube.sig.chunk({"y": 2, "x": 2, "t": 15})
    ref = cube.sig.curvefit("t", np_expo, reduce_dims=["y", "x"], p0=P0, kwargs=TIGHT)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster, \
            Client(cluster):
        out = chunked.nlsq.fit("t", expo, reduce_dims=["y", "x"], p0=P0, tier="chunked", **TIGHT)
        out.to_zarr(tmp_path / "global.zarr")                  # computed while written
    back = xr.open_zarr(tmp_path / "global.zarr")
    close(back.curvefit_coefficients.load(), ref.curvefit_coefficients)


def test_option_errors(cube):
    with pytest.raises(TypeError):
        cube.sig.nlsq.fit("t", expo, kwargs={"method": "dogbox"})
    with pytest.raises(ValueError, match="errors"):
        cube.sig.nlsq.fit("t", expo, errors="maybe")
    with pytest.raises(ValueError, match="No arguments"):
        cube.sig.nlsq.fit(xr.DataArray(np.arange(3.0), dims="z"), expo)
