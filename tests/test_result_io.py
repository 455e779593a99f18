"""Keeping a FitResult (dict/JSON, xarray Dataset, zarr, netCDF, load_result), its equality,
and the report's numbers against independent references (scipy.stats, numpy, closed forms)."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import subprocess
import sys
import warnings

import dask.array as da
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import nlsq_dask
from nlsq_dask import FitResult, WorkflowConfig, WorkflowTier, load_result
from nlsq_dask.report import format_seconds, format_value_error
from nlsq_dask.solver import Status
from nlsq_dask.workflow import Selection

RNG = np.random.default_rng(7)
X = np.linspace(0.5, 10.0, 60)
SIGMA = 0.2 + 0.05 * X
Y = 2.0 * X + 1.0 + RNG.normal(0.0, 1.0, X.size) * SIGMA


def line(x, a, b):
    return a * x + b


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


@pytest.fixture(scope="module")
def result():
    return nlsq_dask.fit(line, X, Y, p0=[1.0, 0.0])


@pytest.fixture(scope="module")
def weighted():
    return nlsq_dask.fit(line, X, Y, p0=[1.0, 0.0], sigma=SIGMA, absolute_sigma=True)


@pytest.fixture(scope="module")
def undetermined():
    """``c`` is not in the model: its covariance rows are inf."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nlsq_dask.fit(lambda x, a, b, c: a * x + b, X, Y, p0=[1.0, 0.0, 1.0])


def quiet_zarr(ds, path):
    with warnings.catch_warnings():     # zarr's notes on consolidated metadata in format 3
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w")


# ----------------------------------------------------------------------------- dict / JSON
def test_to_dict_from_dict_round_trip(result):
    d = result.to_dict()
    for key in ("p0", "grad", "optimality", "active_mask", "perr", "chi2", "success"):
        assert key in d
    again = FitResult.from_dict(d)
    assert again == result
    assert again is not result and again.popt is not result.popt


def test_json_round_trip_restores_types(result):
    again = FitResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert isinstance(again.popt, np.ndarray) and again.popt.dtype == np.float64
    assert again.pcov.shape == (2, 2) and isinstance(again.grad, np.ndarray)
    assert isinstance(again.p0, np.ndarray) and again.active_mask.dtype.kind == "i"
    assert isinstance(again.status, Status) and again.status is result.status
    assert again.tier is WorkflowTier.STANDARD
    assert isinstance(again.config, WorkflowConfig) and again.config == result.config
    assert isinstance(again.selection, Selection) and again.selection == result.selection
    assert again.param_names == ("a", "b") and isinstance(again.param_names, tuple)
    assert again.history == result.history


def test_json_keeps_inf_covariance_and_nan(undetermined):
    assert np.isinf(undetermined.pcov[2]).all()
    text = json.dumps(undetermined.to_dict())
    assert "Infinity" in text
    again = FitResult.from_dict(json.loads(text))
    assert again == undetermined and np.isinf(again.pcov[2, 2])
    nan = dataclasses.replace(undetermined, optimality=float("nan"))
    assert FitResult.from_dict(json.loads(json.dumps(nan.to_dict()))) == nan


def test_from_dict_accepts_inf_and_nan_as_strings(undetermined):
    from nlsq_dask.job_output import jsonable

    d = jsonable(undetermined.to_dict(), finite=True)       # what result.zarr's attrs hold
    assert "inf" in d["pcov"][2]
    assert FitResult.from_dict(d) == undetermined


def test_from_dict_ignores_derived_keys_and_keeps_extras(result):
    d = result.to_dict()
    d.update(perr=[0.0, 0.0], chi2=-1, success=False, dof=0, reduced_chi2=0,
             checkpoint={"path": "x.zarr", "resumed": False}, n_partitions=3)
    again = FitResult.from_dict(d)
    assert again.extras == {"checkpoint": {"path": "x.zarr", "resumed": False},
                            "n_partitions": 3}
    np.testing.assert_array_equal(again.perr, result.perr)


def test_extras_spread_at_top_level_and_clashing_names_nested(result):
    r = dataclasses.replace(result, extras={"checkpoint": {"path": "c.zarr"}, "cost": "mine",
                                            "multistart": {"starts": (1, 2), "winner": np.int64(1)}})
    d = r.to_dict()
    assert d["checkpoint"] == {"path": "c.zarr"} and d["cost"] == r.cost
    assert d["extras"] == {"cost": "mine"}
    again = FitResult.from_dict(json.loads(json.dumps(d)))
    assert again.extras["cost"] == "mine" and again == r


def test_multistart_result_round_trips():
    r = nlsq_dask.fit(decay, X, 3 * np.exp(-0.4 * X) + 1, p0=[1.0, 0.1, 0.0],
                      bounds=([0, 0, -5], [10, 2, 5]), config=WorkflowConfig(
                          enable_multistart=True, n_starts=3))
    assert "multistart" in r.extras
    assert FitResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert "best of 3 starts" in r.fit_report()


def test_from_dict_refuses_what_is_not_a_result():
    with pytest.raises(ValueError, match="lacks"):
        FitResult.from_dict({"popt": [1.0]})
    with pytest.raises(TypeError):
        FitResult.from_dict([1, 2])


def test_callable_loss_comes_back_by_name():
    def rho(z):
        return jnp.stack([z, jnp.ones_like(z), jnp.zeros_like(z)])

    r = nlsq_dask.fit(line, X, Y, p0=[1.0, 0.0], loss=rho)
    again = FitResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert isinstance(again.config.loss, str) and "rho" in again.config.loss
    assert again.selection.config.loss == again.config.loss
    np.testing.assert_array_equal(again.popt, r.popt)
    assert r.rsquared is None and "robust loss" in r.fit_report()


# ----------------------------------------------------------------------------- equality
def test_equality_and_hash(result):
    twin = copy.deepcopy(result)
    assert twin == result and not (twin != result)
    assert "_x" not in twin.__dict__ and "_x" in result.__dict__   # data references left out
    assert pickle.loads(pickle.dumps(result)) == result
    assert dataclasses.replace(result) == result
    changed = dataclasses.replace(result, popt=result.popt + 1e-15)
    assert changed != result
    assert dataclasses.replace(result, message="other") != result
    assert dataclasses.replace(result, history=[]) != result
    assert result != (result.popt, result.pcov) and result != 1
    assert FitResult.__hash__ is None
    with pytest.raises(TypeError):
        hash(result)


def test_equality_nan_and_inf_by_value(undetermined):
    a = dataclasses.replace(undetermined, optimality=float("nan"))
    b = copy.deepcopy(a)
    assert a == b
    b.pcov = b.pcov.copy()
    b.pcov[2, 2] = -np.inf
    assert a != b


# ----------------------------------------------------------------------------- Dataset
def test_to_dataset_names_as_curvefit(result):
    ds = result.to_dataset()
    assert ds["curvefit_coefficients"].dims == ("param",)
    assert list(ds["param"].values) == ["a", "b"]
    assert ds["curvefit_covariance"].dims == ("cov_i", "cov_j")
    assert list(ds["cov_i"].values) == list(ds["cov_j"].values) == ["a", "b"]
    np.testing.assert_array_equal(ds["curvefit_coefficients"].values, result.popt)
    np.testing.assert_array_equal(ds["curvefit_covariance"].values, result.pcov)
    assert int(ds["curvefit_status"]) == result.status and float(ds["curvefit_cost"]) == result.cost
    attrs = ds["curvefit_coefficients"].attrs
    assert attrs["nlsq_tier"] == "standard" and attrs["nlsq_nfev"] == result.nfev
    assert json.loads(attrs["nlsq_config"]) == result.config.to_dict()
    for value in attrs.values():
        assert isinstance(value, (str, int, float)) and not isinstance(value, bool)
    # the variables shared with ds.nlsq.fit have its names, dims and coordinates
    acc = xr.DataArray(Y, dims="x", coords={"x": X}).nlsq.fit("x", line, p0={"a": 1, "b": 0})
    for name in ("curvefit_coefficients", "curvefit_covariance", "curvefit_status",
                 "curvefit_cost"):
        assert acc[name].dims == ds[name].dims
    assert list(acc["param"].values) == list(ds["param"].values)
    np.testing.assert_allclose(acc["curvefit_coefficients"], ds["curvefit_coefficients"])


def test_from_dataset_in_memory(result, undetermined):
    assert FitResult.from_dataset(result.to_dataset()) == result
    assert FitResult.from_dataset(undetermined.to_dataset()) == undetermined


def test_zarr_round_trip(result, tmp_path):
    quiet_zarr(result.to_dataset(), tmp_path / "fit.zarr")
    assert load_result(tmp_path / "fit.zarr") == result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(tmp_path / "fit.zarr")
    assert FitResult.from_dataset(ds) == result


@pytest.mark.parametrize("engine", ["scipy", None])
def test_netcdf_round_trip(undetermined, tmp_path, engine):
    # engine=None picks netCDF4, else h5netcdf, else scipy (netCDF3): all must work
    path = tmp_path / "fit.nc"
    nan = dataclasses.replace(undetermined, optimality=float("nan"))
    nan.to_dataset().to_netcdf(path, engine=engine)
    assert load_result(path) == nan


def test_more_points_than_netcdf3_integers(result, tmp_path):
    big = dataclasses.replace(result, n_points_used=3_000_000_000)
    big.to_dataset().to_netcdf(tmp_path / "big.nc", engine="scipy")
    again = load_result(tmp_path / "big.nc")
    assert again == big and isinstance(again.n_points_used, int)


def test_several_results_in_one_dataset(result, weighted, tmp_path):
    both = xr.merge([result.to_dataset(var="plain"), weighted.to_dataset(var="weighted")])
    assert "plain_curvefit_coefficients" in both and "weighted_curvefit_covariance" in both
    both.to_netcdf(tmp_path / "both.nc", engine="scipy")
    assert load_result(tmp_path / "both.nc", var="weighted") == weighted
    assert FitResult.from_dataset(both, var="plain") == result
    with pytest.raises(ValueError, match="pass var"):
        FitResult.from_dataset(both)


def test_from_dataset_refuses_other_datasets():
    cube = xr.DataArray(np.outer(np.ones(3), 2 * X + 1), dims=("pix", "x"), coords={"x": X})
    out = cube.nlsq.fit("x", line, p0={"a": 1, "b": 0})
    with pytest.raises(ValueError, match="not written by"):
        FitResult.from_dataset(out)
    with pytest.raises(ValueError, match="no fit result"):
        FitResult.from_dataset(xr.Dataset({"y": ("x", Y)}))


def test_load_result_json_and_job_folder(result, tmp_path):
    (tmp_path / "fit.json").write_text(json.dumps(result.to_dict()))
    assert load_result(tmp_path / "fit.json") == result
    job = tmp_path / "job-result"          # the layout of `nlsq-dask fit`'s output folder
    job.mkdir()
    (job / "result.json").write_text(json.dumps(result.to_dict()))
    assert load_result(job) == result
    with pytest.raises(FileNotFoundError):
        load_result(tmp_path / "missing.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither"):
        load_result(tmp_path / "empty")


def test_load_result_reads_a_job_result_zarr_through_its_json(result, tmp_path):
    from types import SimpleNamespace

    from nlsq_dask.job_output import write_results

    @dataclasses.dataclass
    class Data:
        path: str = "data.zarr"

    job = SimpleNamespace(source=tmp_path / "job.yaml", model_name="line", data=Data(),
                          output=tmp_path / "out")
    paths = write_results(result, job)
    assert load_result(paths["zarr"]) == result
    assert load_result(tmp_path / "out") == result


# ----------------------------------------------------------------------------- statistics
def test_correl_closed_form_for_a_line(result):
    # unweighted line: corr(a, b) = -mean(x) / sqrt(mean(x^2))
    expected = -X.mean() / np.sqrt(np.mean(X**2))
    c = result.correl
    np.testing.assert_allclose(c[0, 1], expected, rtol=1e-10)
    np.testing.assert_allclose(np.diag(c), 1.0)
    np.testing.assert_allclose(c, c.T)


def test_correl_nan_for_undetermined_parameters(undetermined):
    c = undetermined.correl
    assert np.isnan(c[2]).all() and np.isnan(c[:, 2]).all()
    assert np.isfinite(c[:2, :2]).all()
    zero = dataclasses.replace(undetermined, pcov=np.diag([1.0, 0.0, 4.0]))
    assert np.isnan(zero.correl[1]).all() and zero.correl[0, 2] == 0.0


def test_rsquared_equals_linregress(result):
    from scipy.stats import linregress

    np.testing.assert_allclose(result.rsquared, linregress(X, Y).rvalue ** 2, rtol=1e-12)


def test_weighted_rsquared_against_numpy(weighted):
    a, b = weighted.popt
    w = 1 / SIGMA**2
    ybar = np.sum(w * Y) / np.sum(w)
    expected = 1 - np.sum(w * (Y - a * X - b) ** 2) / np.sum(w * (Y - ybar) ** 2)
    np.testing.assert_allclose(weighted.rsquared, expected, rtol=1e-9)


def test_rsquared_of_dask_data_on_a_chunked_tier(weighted):
    r = nlsq_dask.fit(line, da.from_array(X, chunks=17), da.from_array(Y, chunks=17), p0=[1, 0],
                      sigma=SIGMA, absolute_sigma=True, tier="chunked")
    assert r.tier is WorkflowTier.CHUNKED
    np.testing.assert_allclose(r.rsquared, weighted.rsquared, rtol=1e-9)


def test_rsquared_skips_non_finite_points_of_dask_data(result):
    y = Y.copy()
    y[[3, 40]] = np.nan
    r = nlsq_dask.fit(line, da.from_array(X, chunks=20), da.from_array(y, chunks=20), p0=[1, 0],
                      tier="streaming")
    from scipy.stats import linregress

    ok = np.isfinite(y)
    assert r.n_points_used == ok.sum()
    np.testing.assert_allclose(r.rsquared, linregress(X[ok], y[ok]).rvalue ** 2, rtol=1e-9)


def test_rsquared_with_a_full_covariance_sigma():
    cov = np.diag(SIGMA**2) + 0.01 * np.exp(-np.abs(X[:, None] - X[None, :]))
    r = nlsq_dask.fit(line, X, Y, p0=[1, 0], sigma=cov)
    a, b = r.popt
    ci = np.linalg.inv(cov)
    one = np.ones_like(X)
    ybar = (one @ ci @ Y) / (one @ ci @ one)
    res = Y - a * X - b
    expected = 1 - (res @ ci @ res) / ((Y - ybar) @ ci @ (Y - ybar))
    np.testing.assert_allclose(r.rsquared, expected, rtol=1e-8)


def test_rsquared_not_available_when_loaded(result):
    again = FitResult.from_dict(result.to_dict())
    assert again.rsquared is None
    assert "R-squared           n/a (needs the data" in again.fit_report()


def test_aic_bic_against_the_formula(weighted):
    a, b = weighted.popt
    chi2 = np.sum(((Y - a * X - b) / SIGMA) ** 2)
    n, k = X.size, 2
    np.testing.assert_allclose(weighted.chi2, chi2, rtol=1e-10)
    np.testing.assert_allclose(weighted.aic, n * np.log(chi2 / n) + 2 * k, rtol=1e-10)
    np.testing.assert_allclose(weighted.bic, n * np.log(chi2 / n) + np.log(n) * k, rtol=1e-10)


# ----------------------------------------------------------------------------- formatting
@pytest.mark.parametrize("value, error, expected", [
    (1.23456, 0.012345, ("1.235", "0.012")),
    (1.23456, 0.0996, ("1.23", "0.10")),          # the rounded error carries a digit
    (100.04, 9.96, ("100", "10")),
    (-3.14159, 0.5, ("-3.14", "0.50")),
    (123456.7, 1234.0, ("123500", "1200")),
    (2.0, 3.7, ("2.0", "3.7")),
    (-0.0004, 0.012, ("0.000", "0.012")),         # rounded to zero: no sign
    (1.0, 1.2e-9, ("1.0000000000", "0.0000000012")),
    (1.23456e-8, 1.2e-10, ("1.235e-08", "1.2e-10")),
    (6.02214076e23, 1.2e19, ("6.02214e+23", "1.2e+19")),
    (0.5, 0.0, ("0.5", "0")),
    (2.0, np.inf, ("2", "inf")),
    (2.0, np.nan, ("2", "nan")),
])
def test_format_value_error(value, error, expected):
    assert format_value_error(value, error) == expected


def test_format_value_error_digits():
    assert format_value_error(1.23456, 0.012345, digits=1) == ("1.23", "0.01")


def test_relative_error_digits():
    from nlsq_dask.report import _significant

    assert [_significant(v) for v in (0.99962, 0.0123, 9.7, 16.2, 123.4)] == \
        ["1.0", "0.012", "9.7", "16", "123"]


@pytest.mark.parametrize("seconds, expected", [
    (0.00042, "420 µs"), (0.0035, "3.5 ms"), (0.035, "35 ms"), (1.234, "1.2 s"),
    (35.4, "35 s"), (125.0, "2 min 5 s"), (7380.0, "2 h 03 min"),
])
def test_format_seconds(seconds, expected):
    assert format_seconds(seconds) == expected


def test_fit_report(weighted):
    text = weighted.fit_report()
    value, error = format_value_error(weighted.popt[0], weighted.perr[0])
    row = next(line for line in text.splitlines() if line.strip().startswith("a "))
    assert row.split()[1:3] == [value, error]
    assert row.split()[3] == f"{100 * weighted.perr[0] / weighted.popt[0]:.2g}%"
    assert row.split()[4] == "1"                                       # the initial value
    for label in ("points", "degrees of freedom", "chi-square", "reduced chi-square", "AIC",
                  "BIC", "R-squared"):
        assert f"  {label} " in text
    assert f"{weighted.aic:.6g}" in text and f"{weighted.rsquared:.6g}" in text
    assert f"C(a, b) = {weighted.correl[0, 1]:+.3f}" in text
    assert "correlations: none with |C| > 0.99" in weighted.fit_report(min_correl=0.99)
    assert text.splitlines()[-1].startswith("tier standard; ")


def test_summary_is_short_and_rounded(result):
    text = result.summary()
    assert len(text.splitlines()) == 5
    value, error = format_value_error(result.popt[1], result.perr[1])
    assert f"b = {value} ± {error}" in text.replace("  ", " ")
    assert format_seconds(result.elapsed) in text
    assert "iterations, 35 ms" in dataclasses.replace(result, elapsed=0.035).summary()


def test_result_module_imports_nothing_heavy():
    code = ("import sys, nlsq_dask.result\n"
            "bad = [m for m in ('jax', 'xarray', 'dask', 'zarr') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
