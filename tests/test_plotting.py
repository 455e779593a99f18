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
from nlsq_dask.plotting import _log_label, _log_ticks, _value_error, plot_fit, plot_map  # noqa: E402

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
    assert "standard fit of 20,000 points" in fig.get_suptitle()


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


def test_bin_means_are_drawn_above_the_model_with_their_spread(data, result):
    fig = plot_fit(result, *data, model=model, how="bin", max_points=100)
    a_data, a_res, _ = fig.axes
    means, fit = a_data.get_lines()
    assert means.get_zorder() > fit.get_zorder()                  # the model is beneath
    assert means.get_marker() == "o" and means.get_markersize() >= 2
    assert means.get_alpha() in (None, 1.0) and fit.get_alpha() < 1
    assert means.get_linestyle() == "None"
    legend = [t.get_text() for t in a_data.get_legend().get_texts()]
    assert legend[0] == "mean of y in each of 100 bins of x (~200 points each)"
    # the residual panel: each mean with its standard error
    (bars,) = a_res.containers
    segments = bars.lines[2][0].get_segments()
    sem = data[1].reshape(100, 200).std(1, ddof=1) / np.sqrt(200)
    np.testing.assert_allclose([s[1, 1] - s[0, 1] for s in segments], 2 * sem, rtol=1e-6)
    assert bars.lines[0].get_zorder() > a_res.get_lines()[-1].get_zorder()   # above y = 0
    assert "standard error" in a_res.get_legend().get_texts()[0].get_text()


def test_the_final_cost_is_within_the_labelled_range(result, data):
    def check(a_cost, cost):
        lo, hi = a_cost.get_ylim()
        ticks = [t for t in a_cost.get_yticks() if lo <= t <= hi]
        assert lo < min(cost) and max(cost) < hi
        assert ticks[0] <= cost[-1] <= ticks[-1] and ticks[0] <= min(cost)
        labels = [t.get_text() for t in a_cost.get_yticklabels() if lo <= t.get_position()[1] <= hi]
        assert all(labels) and len(labels) == len(ticks)
        assert f"final cost {cost[-1]:.6g}" in [t.get_text() for t in a_cost.get_legend().get_texts()]

    a_cost = result.plot().axes[2]
    cost = drawn(a_cost)[1]
    assert a_cost.get_yscale() == "log"
    check(a_cost, cost)
    # a fit started at its optimum: a flat cost, on a linear axis
    again = nlsq_dask.fit(model, *data, p0=result.popt)
    a_cost = again.plot().axes[2]
    assert a_cost.get_yscale() == "linear"
    check(a_cost, drawn(a_cost)[1])


@pytest.mark.parametrize("lo, hi", [(1245.0, 10250.0), (3e-7, 2e-6), (1e-20, 1e5), (0.9, 1000.0),
                                    (1e-300, 1e300), (1.0, 100.0)])
def test_log_ticks_enclose_the_costs(lo, hi):
    ticks = _log_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 9
    assert np.all(np.diff(ticks) > 0) and all(_log_label(t) for t in ticks)
    assert [_log_label(t) for t in (1000.0, 2e-5, 1e5, 0.05)] == ["1000", "2×10⁻⁵", "10⁵", "0.05"]


@pytest.mark.parametrize("value, error, text", [
    (0.500123, 0.000312, "0.50012 ± 0.00031"),
    (2.0, 0.0996, "2.00 ± 0.10"),                      # the error rounds up to 0.10
    (12345.6, 123.0, "12350 ± 120"),
    (1.23e-8, 4.5e-10, "1.230e-08 ± 4.5e-10"),
    (5.0, np.nan, "5"), (5.0, 0.0, "5"), (5.0, np.inf, "5 ± inf"),
])
def test_value_error(value, error, text):
    assert _value_error(value, error) == text


def test_the_title_shows_each_parameter_with_its_error(result, data):
    title = result.plot().get_suptitle()
    assert title.startswith("standard fit of 20,000 points\n")
    for name, v, e in zip(result.param_names, result.popt, result.perr):
        assert f"{name} = {_value_error(v, e)}" in title
    assert title.count("±") == 3
    # an undetermined parameter (inf variance) says so; no covariance at all: values alone
    pcov = np.diag([np.inf, 1e-8, np.nan])
    title = plot_fit(dataclasses.replace(result, pcov=pcov), *data, model=model).get_suptitle()
    assert f"a = {result.popt[0]:.6g} ± inf" in title
    assert f"c = {result.popt[2]:.6g}" in title and title.count("±") == 2


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


def test_import_does_not_import_matplotlib_or_jax():
    code = ("import sys, nlsq_dask, nlsq_dask.plotting; "
            "assert 'matplotlib' not in sys.modules and 'jax' not in sys.modules")
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


def tick_labels(artist):
    return [t.get_text() for t in artist.colorbar.ax.get_yticklabels()]


def test_the_status_map_has_one_labelled_colour_per_code(fitted):
    status = fitted.signal_curvefit_status.values
    codes, counts = np.unique(status, return_counts=True)
    artist = plot_map(fitted, "status")
    names = {1: "gtol", 2: "ftol", 3: "xtol", 4: "ftol+xtol"}
    assert tick_labels(artist) == [f"{names[c]} ({n:,})" for c, n in zip(codes, counts)]
    assert artist.cmap.N == len(codes)
    np.testing.assert_array_equal(np.asarray(artist.get_array()).reshape(6, 5), status)
    # each tick sits in the colour of its code
    ticks = artist.colorbar.get_ticks()
    np.testing.assert_array_equal(artist.norm(ticks), artist.norm(codes))
    assert artist.colorbar.ax.get_ylabel() == "status (pixels)"


def test_every_status_code_and_a_pixel_not_fitted(fitted):
    status = np.array([-1, 0, 1, 2, 3, 4, np.nan] + [2] * 23).reshape(6, 5)
    ds = fitted.assign(signal_curvefit_status=(("y", "x"), status))
    artist = plot_map(ds, "status")
    assert tick_labels(artist) == ["not fitted (1)", "not finite (1)", "max passes (1)",
                                   "gtol (1)", "ftol (24)", "xtol (1)", "ftol+xtol (1)"]
    colours = {c: matplotlib.colors.to_hex(artist.cmap(artist.norm(c))) for c in range(-1, 5)}
    assert len(set(colours.values())) == 6
    assert colours[-1] == "#d62728" and colours[1] == "#2ca02c"    # the same in every map
    drawn_status = np.asarray(artist.get_array()).ravel()
    assert drawn_status[6] < -1 and drawn_status[6] == drawn_status.min()   # NaN: not fitted
    assert matplotlib.colors.to_hex(artist.cmap(artist.norm(drawn_status[6]))) == "#d9d9d9"
    # the same codes in another map have the same colours
    other = plot_map(ds.isel(x=slice(0, 2)), "status")
    assert matplotlib.colors.to_hex(other.cmap(other.norm(-1))) == "#d62728"
    # cmap= picks the colours from a colormap instead
    assert plot_map(ds, "status", cmap="tab10").cmap.N == 7


def test_a_status_along_one_dimension_has_labelled_ticks(fitted):
    status = np.array([1, 2, 2, 4, -1, 2])
    ds = fitted.isel(x=0).assign(signal_curvefit_status=(("y",), status))
    (line,) = plot_map(ds, "status")
    np.testing.assert_array_equal(line.get_ydata(), status)
    axis = line.axes
    assert list(axis.get_yticks()) == [-1, 1, 2, 4]
    assert [t.get_text() for t in axis.get_yticklabels()] == [
        "not finite (1)", "gtol (1)", "ftol (3)", "ftol+xtol (1)"]


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
