"""Never a silently wrong answer: each case is right, or raises/warns naming the cause.

One table per kind of trap (issue 13): models that are not pointwise, undetermined
parameters, no usable data, zarr data that are missing, corrupt or change, a start on
a bound, bad bounds and names (default settings on NIST StRD are in ``test_nist.py``,
where they share the compiled programs). Every case runs on numpy, dask (threads) and
xarray inputs as it applies; ``test_trust_cluster.py`` repeats the dask cases on a
``distributed.LocalCluster``. References: scipy and closed forms.
"""

from __future__ import annotations

import os
import shutil
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import zarr
from scipy.optimize import OptimizeWarning, curve_fit, least_squares

import nlsq_dask

da = pytest.importorskip("dask.array")

N = 4000
X = np.linspace(0.0, 4.0, N)
Y = 2.0 * X + 1.0 + 0.01 * np.sin(37.0 * X)
TARGET = 0.5 * X
LAZY_TIERS = ("standard", "chunked", "streaming")


def line(x, a, b):
    return a * x + b


def lazy(a, chunks=500):
    return da.from_array(np.asarray(a), chunks=chunks)


# ----------------------------------------------------------------------------- 1 pointwise
NOT_POINTWISE = {
    "mean over x": (lambda x, a, b: a * (x - jnp.mean(x)) + b, 2),
    "closes over a per-point array": (lambda x, a, b, c: a * x**2 + b * x - TARGET + c, 3),
    "returns a scalar": (lambda x, a, b: jnp.sum(a * x + b), 2),
    "cumulative sum": (lambda x, a, b: a * jnp.cumsum(x) + b, 2),
    "first point": (lambda x, a, b: a * (x - x[0]) + b, 2),
}


@pytest.mark.parametrize("inputs", ["numpy", "dask"])
@pytest.mark.parametrize("case", list(NOT_POINTWISE))
def test_not_pointwise_models_are_refused(case, inputs):
    model, n = NOT_POINTWISE[case]
    x, y = (X, Y) if inputs == "numpy" else (lazy(X), lazy(Y))
    with pytest.raises(nlsq_dask.NotPointwiseError, match="pointwise.*extra rows of x"):
        nlsq_dask.fit(model, x, y, p0=[1.0] * n)


@pytest.mark.parametrize("case", ["mean over x", "returns a scalar"])
def test_accessor_refuses_not_pointwise_models(case):
    model, _ = NOT_POINTWISE[case]
    ds = xr.Dataset({"s": (("p", "t"), np.tile(Y, (3, 1)))}, coords={"t": X})
    with pytest.raises(nlsq_dask.NotPointwiseError):
        ds.nlsq.fit("t", model)                      # per pixel
    with pytest.raises(nlsq_dask.NotPointwiseError):
        ds.nlsq.fit("t", model, reduce_dims="p")     # global


def test_per_point_array_passed_as_a_row_of_x_is_exact():
    """The documented fix: the per-point array as an extra row of x gives curve_fit's fit."""
    def model(x, a, b, c):
        return a * x[0] ** 2 + b * x[0] - x[1] + c

    y = 0.3 * X**2 - 1.2 * X - TARGET + 0.7 + 0.01 * np.cos(5 * X)
    res = nlsq_dask.fit(model, np.stack([X, TARGET]), y, p0=[1.0, 1.0, 1.0])
    ref, _ = curve_fit(lambda x, a, b, c: a * x**2 + b * x - TARGET + c, X, y, p0=[1, 1, 1])
    np.testing.assert_allclose(res.popt, ref, rtol=1e-9)


@pytest.mark.parametrize("model", [lambda x, a: a + 0 * x, lambda x, a: a],
                         ids=["broadcast", "constant"])
def test_constant_models_are_pointwise(model):
    res = nlsq_dask.fit(model, X, Y, p0=[1.0])
    np.testing.assert_allclose(res.popt, [Y.mean()], rtol=1e-12)


# ----------------------------------------------------------------------------- 2 undetermined
UNDETERMINED = {
    # name: (model, p0, sigma, undetermined parameters)
    "ignored parameter": (lambda x, a, b, c: a * x + b, [1.0, 1.0, 1.0], None, [2]),
    "piecewise constant": (lambda x, a, b: jnp.round(a) * x + jnp.round(b), [1.0, 1.0], None,
                           [0, 1]),
    "weights underflow": (line, [1.0, 1.0], 1e300, [0, 1]),
}


@pytest.mark.parametrize("tier", ["numpy", *LAZY_TIERS])
@pytest.mark.parametrize("case", list(UNDETERMINED))
def test_undetermined_parameters_get_inf_and_a_warning(case, tier):
    model, p0, sigma, bad = UNDETERMINED[case]
    sigma = None if sigma is None else np.full(N, sigma)
    kw = {} if tier == "numpy" else dict(tier=tier)
    x, y, s = (X, Y, sigma) if tier == "numpy" else (
        lazy(X), lazy(Y), None if sigma is None else lazy(sigma))
    with pytest.warns(nlsq_dask.CovarianceWarning) as caught:
        res = nlsq_dask.fit(model, x, y, p0=p0, sigma=s, **kw)
    assert issubclass(caught[0].category, OptimizeWarning)
    assert np.all(np.isinf(res.perr[bad]))
    good = [i for i in range(len(p0)) if i not in bad]
    if good:  # the determined parameters are those of the straight line (closed form)
        ref, ref_cov = linear_fit(n_params=len(p0))
        np.testing.assert_allclose(res.popt[good], ref, rtol=1e-6)   # default tolerances
        np.testing.assert_allclose(res.perr[good], np.sqrt(np.diag(ref_cov)), rtol=1e-6)


def linear_fit(x=X, y=Y, n_params=2):
    """Least-squares straight line through (x, y) and curve_fit's covariance for a model
    of ``n_params`` parameters (the χ² is divided by ``N - n_params``)."""
    A = np.stack([x, np.ones(x.size)], axis=1)
    coef, rss, _, _ = np.linalg.lstsq(A, y, rcond=None)
    return coef, np.linalg.inv(A.T @ A) * rss[0] / (x.size - n_params)


def test_scipy_warns_the_same_class():
    with pytest.warns(OptimizeWarning):
        curve_fit(lambda x, a, b, c: a * x + b, X, Y)
    assert issubclass(nlsq_dask.CovarianceWarning, OptimizeWarning)


def test_accessor_per_pixel_undetermined_parameter_is_inf():
    ds = xr.Dataset({"s": (("p", "t"), np.tile(Y, (4, 1)))}, coords={"t": X})
    out = ds.nlsq.fit("t", lambda x, a, b, c: a * x + b)
    cov = out["s_curvefit_covariance"].values
    assert np.all(np.isinf(cov[:, 2, :])) and np.all(np.isinf(cov[:, :, 2]))
    _, ref_cov = linear_fit(n_params=3)
    np.testing.assert_allclose(cov[:, :2, :2], np.broadcast_to(ref_cov, (4, 2, 2)), rtol=1e-6)


# ----------------------------------------------------------------------------- 3 no usable data
def _nan_except(k):
    y = np.full(N, np.nan)
    y[:k] = Y[:k]
    return y


NO_DATA = {
    # name: (y, sigma, error class, match)
    "all NaN": (np.full(N, np.nan), None, nlsq_dask.InsufficientDataError, "no usable data point"),
    "fewer points than parameters": (_nan_except(1), None, nlsq_dask.InsufficientDataError,
                                     "parameters=2 must not exceed the number of data points=1"),
    "sigma zero": (Y, np.where(np.arange(N) == 3333, 0.0, 1.0), ValueError, "sigma must be positive"),
    "sigma negative": (Y, np.where(np.arange(N) == 7, -1.0, 1.0), ValueError, "sigma must be positive"),
}


@pytest.mark.parametrize("tier", ["numpy", *LAZY_TIERS])
@pytest.mark.parametrize("case", list(NO_DATA))
def test_no_usable_data_raises(case, tier):
    y, sigma, error, match = NO_DATA[case]
    if tier == "numpy":
        kw = dict(nan_policy="omit")
        x, s = X, sigma
    else:
        kw = dict(tier=tier)
        x, y, s = lazy(X), lazy(y), None if sigma is None else lazy(sigma)
    with pytest.raises(error, match=match):
        nlsq_dask.fit(line, x, y, p0=[1.0, 1.0], sigma=s, **kw)


def test_accessor_pixels_with_fewer_points_than_parameters():
    t = np.linspace(0.0, 1.0, 20)
    y = np.tile(2 * t + 1, (3, 1))
    y[1, 1:] = np.nan                      # one usable point for two parameters
    ds = xr.Dataset({"s": (("p", "t"), y)}, coords={"t": t})
    with pytest.raises(nlsq_dask.InsufficientDataError, match="1 pixel"):
        ds.nlsq.fit("t", line)
    out = ds.nlsq.fit("t", line, errors="ignore")
    np.testing.assert_allclose(out["s_curvefit_coefficients"].values[[0, 2]], [[2, 1], [2, 1]],
                               rtol=1e-9)
    assert np.isnan(out["s_curvefit_coefficients"].values[1]).all()
    assert out["s_curvefit_status"].values[1] == -1


def test_complex_model_is_a_clear_type_error():
    with pytest.raises(TypeError, match="returns complex128 values"):
        nlsq_dask.fit(lambda x, a, b: a * x + 1j * b, X, Y, p0=[1.0, 1.0])


def test_insufficient_data_is_also_a_type_error_as_in_scipy():
    with pytest.raises(TypeError, match="must not exceed the number of data points"):
        nlsq_dask.fit(lambda x, a, b, c: a * x**2 + b * x + c, X[:2], Y[:2], p0=[1, 1, 1])


def test_no_usable_data_is_found_in_the_first_pass_not_before(monkeypatch):
    """Lazy data are not scanned up front: the error comes after exactly one pass."""
    calls = between_passes(monkeypatch, lambda: None)
    with pytest.raises(nlsq_dask.InsufficientDataError):
        nlsq_dask.fit(line, lazy(X), lazy(np.full(N, np.nan)), p0=[1, 1], tier="streaming")
    assert len(calls) == 1


def test_cli_job_with_all_nan_data_exits_2(tmp_path, capsys):
    from nlsq_dask import cli

    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    g.create_array("x", data=X, chunks=(1000,))
    g.create_array("y", data=np.full(N, np.nan), chunks=(1000,))
    (tmp_path / "job.yaml").write_text(
        "data:\n  path: d.zarr\n  x: x\n  y: y\nmodel: exponential\np0: [1.0, 1.0, 1.0]\n"
        "output: out\nworkflow:\n  tier: streaming\n")
    assert cli.main(["fit", str(tmp_path / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no usable data point" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- 4 zarr data
def _store(path, fill=0.0):
    shutil.rmtree(path, ignore_errors=True)
    g = zarr.open_group(str(path), mode="w")
    for name, values in (("x", X), ("y", Y)):
        g.create_array(name, shape=(N,), chunks=(500,), dtype="f8", fill_value=fill)[:] = values
    return str(path)


def _zarr_inputs(path):
    return da.from_zarr(path, component="x"), da.from_zarr(path, component="y")


@pytest.mark.parametrize("tier", LAZY_TIERS)
@pytest.mark.parametrize("fill", [0.0, np.nan], ids=["zero-fill", "nan-fill"])
def test_missing_zarr_chunk_is_refused_before_the_first_pass(tmp_path, tier, fill):
    path = _store(tmp_path / "d.zarr", fill)
    os.remove(os.path.join(path, "y", "c", "3"))
    with pytest.raises(nlsq_dask.MissingChunksError, match=r"chunk \(3,\).*1,500-1,999"):
        nlsq_dask.fit(line, *_zarr_inputs(path), p0=[1, 1], tier=tier)
    # the opt-in reads them as zarr does: a zero fill is fitted as data (the answer then
    # is curve_fit's on those values), a NaN fill drops the points
    res = nlsq_dask.fit(line, *_zarr_inputs(path), p0=[1, 1], tier=tier, missing_chunks="fill")
    y = Y.copy()
    y[1500:2000] = fill
    ok = np.isfinite(y)
    ref, _ = linear_fit(X[ok], y[ok])
    np.testing.assert_allclose(res.popt, ref, rtol=1e-7)
    assert res.n_points_used == ok.sum()


def test_missing_chunk_of_xarray_zarr_dataset(tmp_path):
    path = str(tmp_path / "ds.zarr")
    xr.Dataset({"y": ("t", Y)}, coords={"t": X}).chunk(t=500).to_zarr(path, consolidated=False)
    os.remove(os.path.join(path, "y", "c", "2"))
    ds = xr.open_zarr(path, consolidated=False)
    with pytest.raises(nlsq_dask.MissingChunksError, match="nan"):
        nlsq_dask.fit(line, ds.t, ds.y, p0=[1, 1], tier="streaming")
    with pytest.raises(nlsq_dask.MissingChunksError):
        ds.nlsq.fit("t", line, reduce_dims="t")


@pytest.mark.parametrize("tier", LAZY_TIERS)
def test_corrupt_chunk_names_array_chunk_and_store(tmp_path, tier):
    path = _store(tmp_path / "d.zarr")
    with open(os.path.join(path, "y", "c", "4"), "wb") as f:
        f.write(b"not a zstd frame" * 8)
    with pytest.raises(nlsq_dask.DataReadError, match=r"input y .*'y'.*chunk \(4,\).*2,000-2,499"):
        nlsq_dask.fit(line, *_zarr_inputs(path), p0=[1, 1], tier=tier)


def between_passes(monkeypatch, action):
    """Run ``action()`` after the first pass of every dask fit, before the second."""
    from nlsq_dask.engines import dask_engine

    original = dask_engine.PassRunner.__call__
    calls = []

    def run(self, params, parts=None):
        calls.append(1)
        if len(calls) == 2:
            action()
        return original(self, params, parts)

    monkeypatch.setattr(dask_engine.PassRunner, "__call__", run)
    return calls


@pytest.mark.parametrize("change", ["rewritten", "chunk lost"])
def test_streaming_store_that_changes_between_passes_stops(tmp_path, monkeypatch, change):
    path = _store(tmp_path / "d.zarr")
    if change == "rewritten":
        between_passes(monkeypatch, lambda: zarr.open_array(path + "/y", mode="r+")
                       .__setitem__(slice(1000, 1500), 5.0))
    else:
        between_passes(monkeypatch, lambda: os.remove(os.path.join(path, "y", "c", "2")))
    with pytest.raises(nlsq_dask.DataChangedError, match=r"partition 2 \(points 1,000-1,499\)"):
        nlsq_dask.fit(lambda x, a, b: a * jnp.exp(-b * x), *_zarr_inputs(path), p0=[1.0, 0.1],
                      tier="streaming")


def test_unchanged_data_pass_the_ledger_on_every_pass():
    res = nlsq_dask.fit(lambda x, a, b: a * jnp.exp(-b * x), lazy(X), lazy(np.exp(-0.3 * X)),
                        p0=[1.5, 0.1], tier="streaming")
    np.testing.assert_allclose(res.popt, [1.0, 0.3], rtol=1e-9)
    assert res.nfev > 3


# ----------------------------------------------------------------------------- 5 start on a bound
GH19103_Y = np.array([0.0] * 66 + [
    1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 2, 1, 0, 3, 1, 6, 5, 0, 0, 2, 8,
    4, 4, 6, 9, 7, 2, 7, 8, 2, 13, 9, 8, 11, 10, 13, 14, 19, 11, 15, 18, 26, 19, 32, 29, 28,
    36, 32, 35, 36, 43, 52, 32, 58, 56, 52, 67, 53, 72, 88, 77, 95, 94, 84, 86, 101, 107,
    108, 118, 96, 115, 138, 137], dtype=float)


@pytest.mark.parametrize("tier", ["numpy", "streaming"])
def test_start_on_a_bound_converges_as_scipy(tier):
    """scipy gh-19103: p0 on the lower bound of A; least_squares moves it inside."""
    x = np.arange(GH19103_Y.size) * 0.1
    bounds = ((0.01, 0, 0), (np.inf, 10, 20.9))
    ref = least_squares(lambda p: p[0] * np.exp(p[1] * (x - p[2])) - GH19103_Y,
                        [0.01, 1, 5], bounds=bounds)
    kw = {} if tier == "numpy" else dict(tier=tier)
    xs, ys = (x, GH19103_Y) if tier == "numpy" else (lazy(x, 40), lazy(GH19103_Y, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nlsq_dask.CovarianceWarning)  # see below
        res = nlsq_dask.fit(lambda x, A, B, x0: A * jnp.exp(B * (x - x0)), xs, ys,
                            p0=[0.01, 1, 5], bounds=bounds, **kw)
    assert res.success and res.nfev < 100
    # only A·exp(-B·x0) is determined: A and x0 have no meaningful standard error (inf when
    # the rounding puts the null direction below the cut-off, else huge, as curve_fit's)
    assert np.all(res.perr[[0, 2]] > 100 * np.abs(res.popt[[0, 2]]))
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-7)       # 1696.55
    np.testing.assert_allclose(res.popt[1], ref.x[1], rtol=1e-5)    # B is determined
    # A and x0 only enter as A·exp(-B·x0), which is determined
    np.testing.assert_allclose(res.popt[0] * np.exp(-res.popt[1] * res.popt[2]),
                               ref.x[0] * np.exp(-ref.x[1] * ref.x[2]), rtol=1e-4)


# ----------------------------------------------------------------------------- 6 bounds and names
DS = xr.Dataset({"s": (("p", "t"), np.tile(Y, (3, 1))), "flat": ("p", np.ones(3))},
                coords={"t": X})

BAD_ARGUMENTS = {
    "NaN bound": (lambda: nlsq_dask.fit(line, X, Y, p0=[1, 1], bounds=([np.nan, 0], [1, 2])),
                  ValueError, "must not contain NaN"),
    "string absolute_sigma": (lambda: nlsq_dask.fit(line, X, Y, p0=[1, 1], absolute_sigma="no"),
                              TypeError, "absolute_sigma must be True or False"),
    "accessor lb > ub": (lambda: DS.nlsq.fit("t", line, bounds={"a": (2, 1)}),
                         ValueError, "lower bound 2 > upper bound 1"),
    "accessor unknown p0 name": (lambda: DS.nlsq.fit("t", line, p0={"slope": 1.0}),
                                 ValueError, r"p0 names \['slope'\].*\['a', 'b'\]"),
    "accessor unknown bounds name": (lambda: DS.nlsq.fit("t", line, bounds={"z": (0, 1)}),
                                     ValueError, r"bounds names \['z'\]"),
    "accessor missing reduce_dims": (lambda: DS.nlsq.fit("t", line, reduce_dims="nope"),
                                     ValueError, r"reduce_dims \['nope'\] are not dimensions"),
    "accessor string absolute_sigma": (
        lambda: DS.nlsq.fit("t", line, kwargs={"absolute_sigma": "yes"}), TypeError,
        "absolute_sigma must be True or False"),
    "accessor NaN bound": (lambda: DS.nlsq.fit("t", line, bounds={"a": (np.nan, 1)}),
                           ValueError, "must not be NaN"),
    "accessor per-pixel lb > ub": (
        lambda: DS.nlsq.fit("t", line, bounds={"a": (xr.DataArray([0, 5, 0], dims="p"), 1)}),
        ValueError, "lower bound above the upper bound"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_bounds_and_names_are_refused(case):
    call, error, match = BAD_ARGUMENTS[case]
    with pytest.raises(error, match=match):
        call()


def test_accessor_leaves_out_variables_without_the_fit_dimension():
    with pytest.warns(UserWarning, match=r"\['flat'\] do not have the fit dimension"):
        out = DS.nlsq.fit("t", line)
    assert "flat_curvefit_coefficients" not in out
    ref, _ = linear_fit()
    np.testing.assert_allclose(out["s_curvefit_coefficients"].values,
                               np.broadcast_to(ref, (3, 2)), rtol=1e-7)
    with pytest.raises(ValueError, match="no data variable has the fit dimension"):
        DS.drop_vars("s").nlsq.fit("t", line)
