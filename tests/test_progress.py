"""Progress on every tier and ``callback=`` (issue 17): the tier and why at the start, a
line per pass with the compiling pass labelled, partitions and an ETA within dask
passes, and scipy's callback contract (``intermediate_result`` or ``x``; True or
``StopIteration`` stops with status -2)."""

from __future__ import annotations

import re

import dask.array as da
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import nlsq_dask
import nlsq_dask.engines.progress as progress_module

X = np.linspace(0, 10, 40_000)
Y = 2.0 * np.exp(-0.5 * X) + 0.3
P0 = [2.5, 0.6, 0.2]


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


@pytest.fixture
def every_update(monkeypatch):
    """Partition lines at every partition (they are throttled to one per 10 s in logs)."""
    monkeypatch.setattr(progress_module, "LOG_REFRESH", 0.0)


def test_standard_tier_says_its_tier_and_a_line_per_pass(capsys):
    result = nlsq_dask.fit(model, X, Y, p0=P0, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("nlsq_dask: tier standard (in memory): standard peak")
    passes = [line for line in err if line.startswith("pass")]
    assert len(passes) == result.nfev
    assert "(incl. compile)" in passes[0] and "(incl. compile)" not in passes[1]
    assert re.search(r"cost \S+ \| step \S+ \| \S+ s \|", passes[-1])


def test_dask_pass_reports_partitions_as_they_finish_then_an_eta(capsys, every_update):
    x, y = da.from_array(X, 4_000), da.from_array(Y, 4_000)
    nlsq_dask.fit(model, x, y, p0=P0, tier="streaming", progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("nlsq_dask: tier streaming (10 partitions of ~4,000 points)")
    first = [line for line in err if line.startswith("pass   1 ")]
    assert first[0] == "pass   1 (compiling) | 1/10 partitions"          # no rate known yet
    assert any("ETA" in line for line in first[1:-1])
    later = [line for line in err if line.startswith("pass   3 |") and "partitions" in line]
    assert [line.split("|")[1].strip() for line in later] == [f"{k}/10 partitions"
                                                               for k in range(1, 10)]
    assert all("ETA" in line for line in later)          # the last pass's time per partition


def test_accessor_global_fit_shows_progress(capsys):
    da_ = xr.DataArray(Y, dims="t", coords={"t": X})
    da_.nlsq.fit("t", model, p0={"a": 2.5, "b": 0.6, "c": 0.2}, progress=True)
    assert capsys.readouterr().err.startswith("nlsq_dask: tier standard")


def test_callback_with_intermediate_result_stops_the_fit_with_its_own_status():
    seen = []

    def callback(intermediate_result):
        seen.append(intermediate_result)
        return intermediate_result.nfev >= 3

    result = nlsq_dask.fit(model, X, Y, p0=P0, callback=callback)
    assert [s.nfev for s in seen] == [1, 2, 3]
    assert result.status == -2 and not result.success and result.nfev == 3
    assert "stopped by the callback" in result.message
    np.testing.assert_array_equal(result.popt, seen[-1].x)
    assert not seen[-1].x.flags.writeable and seen[-1].cost == result.cost
    with pytest.raises(ValueError):
        seen[-1].x[0] = 1.0


@pytest.mark.parametrize("tier", ["standard", "streaming"])
def test_callback_of_x_and_stop_iteration_on_every_tier(tier):
    xs = []

    def callback(x):
        xs.append(np.array(x))
        if len(xs) == 2:
            raise StopIteration

    x, y = (X, Y) if tier == "standard" else (da.from_array(X, 8_000), da.from_array(Y, 8_000))
    result = nlsq_dask.fit(model, x, y, p0=P0, tier=tier, callback=callback, fixed={"c": 0.3})
    assert result.status == -2 and result.nfev == 2
    np.testing.assert_allclose(xs[0], [2.5, 0.6, 0.3])        # every parameter, fixed included
    np.testing.assert_array_equal(result.popt, xs[-1])


def test_a_stop_request_on_the_last_pass_changes_nothing():
    result = nlsq_dask.fit(model, X, Y, p0=P0, callback=lambda intermediate_result:
                           intermediate_result.done)
    reference = nlsq_dask.fit(model, X, Y, p0=P0)
    assert result.status == reference.status > 0
    np.testing.assert_array_equal(result.popt, reference.popt)


def test_bad_progress_and_callback_are_refused():
    with pytest.raises(TypeError, match="callback must be callable"):
        nlsq_dask.fit(model, X, Y, p0=P0, callback=3)
    with pytest.raises(TypeError, match="progress must be True or False"):
        nlsq_dask.fit(model, X, Y, p0=P0, progress="yes")


def test_progress_within_a_pass_on_an_explicit_client(capsys, every_update):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster, \
            Client(cluster, set_as_default=False) as client:
        x, y = da.from_array(X, 8_000), da.from_array(Y, 8_000)
        result = nlsq_dask.fit(model, x, y, p0=P0, tier="chunked", client=client,
                               progress=True)
    assert result.success
    err = capsys.readouterr().err
    assert "tier chunked" in err and "4/5 partitions" in err


def test_per_pixel_fits_say_what_runs_and_when(capsys):
    t = np.linspace(0, 4, 30)
    cube = xr.DataArray(np.exp(-np.linspace(0.5, 1.5, 6)[:, None] * t), dims=("p", "t"),
                        coords={"t": t})
    cube.nlsq.fit("t", lambda t, k: jnp.exp(-k * t), p0=[1.0], progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "nlsq_dask: per pixel: 6 fits of 30 points each, now"
    assert err[1].startswith("nlsq_dask: 6 of 6 pixels converged in ")
    cube.chunk({"p": 3}).nlsq.fit("t", lambda t, k: jnp.exp(-k * t), p0=[1.0], progress=True)
    assert "lazy: they run when the result is computed" in capsys.readouterr().err


def test_the_tier_line_counts_the_partitions_numpy_data_are_cut_into(capsys):
    nlsq_dask.fit(model, X, Y, p0=P0, tier="streaming", chunk_size=5_000, progress=True)
    assert capsys.readouterr().err.startswith(
        "nlsq_dask: tier streaming (8 partitions of ~5,000 points)")
