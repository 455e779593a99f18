"""Pictures: FitResult.plot / plotting.plot_fit and the accessor's plot_map."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import dask.array as da  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

import nlsq_dask  # noqa: E402
from nlsq_dask.plotting import plot_fit, plot_map  # noqa: E402

P0 = [2.5, 0.6, 0.2]


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def plane(x, a, b, c):
    return a * x[0] + b * x[1] + c


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    x = np.linspace(0, 10, 20_000)
    y = 2.0 * np.exp(-0.5 * x) + 0.3 + np.random.default_rng(0).normal(0, 0.05, x.size)
    return x, y


@pytest.fixture(scope="module")
def result(data):
    return nlsq_dask.fit(model, *data, p0=P0)


def drawn(ax):
    """x and y of the first line on ``ax`` (the data)."""
    line = ax.get_lines()[0]
    return np.asarray(line.get_xdata()), np.asarray(line.get_ydata())


def test_result_plot_has_three_panels(result):
    fig = result.plot()
    a_data, a_res, a_cost = fig.axes
    assert len(a_data.get_lines()) == 2                       # data and fit
    x, y = drawn(a_data)
    assert len(x) <= 5000 and np.all(np.diff(x) >= 0)
    fit_y = a_data.get_lines()[1].get_ydata()
    np.testing.assert_allclose(fit_y, np.asarray(model(x, *result.popt)), rtol=1e-12)
    _, resid = drawn(a_res)
    np.testing.assert_allclose(resid, y - fit_y, atol=1e-12)
    iters, cost = drawn(a_cost)
    assert list(iters) == [h["iteration"] for h in result.history]
    assert cost[-1] == pytest.approx(result.cost) and cost[0] > cost[-1]
    assert a_cost.get_yscale() == "log"
    assert "standard fit of 20,000 points" in fig._suptitle.get_text()


def test_small_data_are_drawn_whole(data):
    x, y = data[0][::200], data[1][::200]      # 100 points
    res = nlsq_dask.fit(model, x, y, p0=P0)
    fig = res.plot()
    np.testing.assert_array_equal(drawn(fig.axes[0])[1], y)


def test_large_dask_data_are_subsampled_lazily(data):
    x, y = (da.from_array(a, chunks=4_000) for a in data)
    res = nlsq_dask.fit(model, x, y, p0=P0, tier="streaming")
    fig = res.plot(max_points=1000)
    xs, ys = drawn(fig.axes[0])
    assert len(xs) == 1000                                    # every 20th point
    np.testing.assert_array_equal(ys, data[1][::20])
    assert "every 20th of 20,000 points" in fig.axes[0].get_legend().get_texts()[0].get_text()


@pytest.mark.parametrize("lazy", [False, True])
def test_binned_data_follow_the_fit(data, result, lazy):
    x, y = (da.from_array(a, chunks=3_000) for a in data) if lazy else data
    fig = plot_fit(result, x, y, model=model, how="bin", max_points=100)
    xs, ys = drawn(fig.axes[0])
    assert len(xs) == 100
    # 200-point bin means: noise 0.05/sqrt(200), curvature of the model within a bin small
    assert np.max(np.abs(drawn(fig.axes[1])[1])) < 0.02
    np.testing.assert_allclose(xs, data[0].reshape(100, 200).mean(1), atol=1e-9)


def test_several_inputs_show_data_against_model():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (2, 500))
    y = 1.5 * x[0] - 0.5 * x[1] + 0.2 + rng.normal(0, 0.01, 500)
    res = nlsq_dask.fit(plane, x, y, p0=[1, 1, 1])
    fig = res.plot()
    assert fig.axes[0].get_xlabel() == "model"
    pred, obs = drawn(fig.axes[0])
    np.testing.assert_allclose(np.sort(obs), np.sort(y))
    assert np.corrcoef(pred, obs)[0, 1] > 0.99


def test_into_given_axes(result):
    fig, axes = plt.subplots(1, 3)
    assert result.plot(ax=axes) is fig
    assert all(len(a.get_lines()) > 0 for a in axes)
    with pytest.raises(ValueError, match="3 matplotlib Axes"):
        result.plot(ax=axes[:2])


def test_a_result_without_its_data_says_what_to_pass(data, result):
    bare = dataclasses.replace(result)
    bare._model = bare._x = bare._y = None                     # as if rebuilt from result.json
    with pytest.raises(ValueError, match=r"pass them: nlsq_dask.plotting.plot_fit\(result, x, y, model=model\)"):
        plot_fit(bare)
    assert len(plot_fit(bare, *data, model=model).axes) == 3


def test_bad_arguments(result):
    with pytest.raises(ValueError, match="how must be one of"):
        result.plot(how="histogram")
    with pytest.raises(ValueError, match="max_points"):
        result.plot(max_points=1)


def test_import_does_not_import_matplotlib():
    code = "import sys, nlsq_dask, nlsq_dask.plotting; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- maps
@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(2)
    t = np.linspace(0, 10, 30)
    rate = np.linspace(0.3, 0.8, 6)[:, None] * np.ones((6, 5))
    sig = 2.0 * np.exp(-rate[..., None] * t) + 0.3 + rng.normal(0, 0.01, (6, 5, 30))
    ds = xr.Dataset({"signal": (("y", "x", "t"), sig)}, coords={"t": t})
    return ds.chunk({"y": 3}), rate


@pytest.fixture(scope="module")
def fitted(cube):
    return cube[0].nlsq.fit("t", model, p0={"a": 1.5, "b": 0.5, "c": 0.0})


def test_plot_map_of_a_parameter(fitted, cube):
    artist = fitted.nlsq.plot_map("b")
    img = np.asarray(artist.get_array()).reshape(6, 5)
    np.testing.assert_allclose(img, cube[1], atol=0.01)
    assert artist.axes.get_title() == "signal: b"


def test_plot_map_of_errors_cost_and_status(fitted):
    err = np.asarray(plot_map(fitted, "b", error=True).get_array())
    expected = np.sqrt(fitted.signal_curvefit_covariance.sel(cov_i="b", cov_j="b").values)
    np.testing.assert_allclose(err.ravel(), expected.ravel())
    assert np.all(np.asarray(plot_map(fitted, "status").get_array()) > 0)
    assert np.all(np.asarray(plot_map(fitted, "cost").get_array()) > 0)


def test_plot_map_errors(fitted, cube):
    with pytest.raises(ValueError, match=r"unknown parameter 'k'; choose one of \['a', 'b', 'c'\]"):
        plot_map(fitted, "k")
    two = xr.merge([fitted, fitted.rename({k: k.replace("signal", "other") for k in fitted.data_vars})])
    with pytest.raises(ValueError, match=r"pass var= one of \['signal', 'other'\]"):
        plot_map(two, "b")
    assert plot_map(two, "b", var="other") is not None
    with pytest.raises(ValueError, match="no \\*_curvefit_coefficients"):
        plot_map(cube[0], "b")
    glob = cube[0].isel(y=0, x=0).nlsq.fit("t", model, p0={"a": 1.5, "b": 0.5, "c": 0.0})
    with pytest.raises(ValueError, match="global fit"):
        plot_map(glob, "b")
    deep = xr.concat([fitted, fitted], dim="run")
    with pytest.raises(ValueError, match=r"select down to two first, e.g. plot_map\(ds.isel\(run=0\), 'b'\)"):
        plot_map(deep, "b")


def test_plot_map_of_a_coefficients_array(fitted):
    artist = plot_map(fitted.signal_curvefit_coefficients, "a")
    assert np.asarray(artist.get_array()).size == 30
