"""NLSQ v0.5.3's ``fit`` and result accessors (issue 18): ``fit(..., workflow=...)``,
``method=``/``check_finite=``, and the dict-style ``CurveFitResult`` answers, each
against its definition computed independently (numpy / scipy.stats)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import nlsq_dask
from nlsq_dask import WorkflowConfig, WorkflowTier

X = np.linspace(0, 5, 400)
Y = 3.0 * X + 1.0 + np.random.default_rng(3).normal(0, 0.2, X.size)


def line(x, a, b):
    return a * x + b


def expo(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def test_workflow_auto_and_nlsqs_keywords_are_accepted():
    result = nlsq_dask.fit(line, X, Y, p0=[1, 0], workflow="auto", method="trf",
                           check_finite=True)
    ref = stats.linregress(X, Y)
    np.testing.assert_allclose(result.popt, [ref.slope, ref.intercept], rtol=1e-9)


def test_workflow_names_a_preset_and_a_config_as_config():
    by_name = nlsq_dask.fit(line, X, Y, p0=[1, 0], workflow="fast")
    by_preset = nlsq_dask.fit(line, X, Y, p0=[1, 0], preset="fast")
    assert by_name.config == by_preset.config
    config = WorkflowConfig(tier=WorkflowTier.STREAMING)
    assert nlsq_dask.fit(line, X, Y, p0=[1, 0], workflow=config).tier is WorkflowTier.STREAMING
    chosen = nlsq_dask.auto_select_workflow(n_points=X.size, n_params=2, goal="fast")
    result = nlsq_dask.fit(line, X, Y, p0=[1, 0], workflow=chosen)
    assert result.config.goal is chosen.config.goal and result.success


@pytest.mark.parametrize("kwargs, error", [
    (dict(workflow="fast", preset="robust"), TypeError),
    (dict(workflow=WorkflowConfig(), config=WorkflowConfig(goal="fast")), TypeError),
    (dict(workflow=3), TypeError),
])
def test_conflicting_or_bad_workflow_is_refused(kwargs, error):
    with pytest.raises(error, match="workflow"):
        nlsq_dask.fit(line, X, Y, p0=[1, 0], **kwargs)


def test_the_result_answers_as_nlsqs_dict():
    result = nlsq_dask.fit(line, X, Y, p0=[1, 0])
    assert result.get("pcov") is result.pcov and result["x"] is result.popt
    assert result.get("no such key", 5) == 5 and "pcov" in result and "nope" not in result
    with pytest.raises(KeyError):
        result["nope"]
    assert {"x", "pcov", "fun", "nfev", "xdata", "ydata"} <= set(result.keys())
    assert result.xdata is X and result.ydata is Y and result.model is line
    popt, pcov = result                                     # still unpacks like curve_fit
    np.testing.assert_array_equal(result[0], popt)


def test_goodness_of_fit_by_nlsqs_definitions():
    result = nlsq_dask.fit(line, X, Y, p0=[1, 0])
    res = Y - (result.popt[0] * X + result.popt[1])
    n, p = X.size, 2
    r2 = stats.linregress(X, Y).rvalue ** 2
    np.testing.assert_allclose(result.r_squared, r2, rtol=1e-10)
    np.testing.assert_allclose(result.adj_r_squared, 1 - (1 - r2) * (n - 1) / (n - p - 1),
                               rtol=1e-10)
    np.testing.assert_allclose(result.rmse, np.sqrt(np.mean(res ** 2)), rtol=1e-8)
    np.testing.assert_allclose(result.mae, np.mean(np.abs(res)), rtol=1e-8)
    t = stats.t.ppf(0.975, n - p)
    perr = np.sqrt(np.diag(result.pcov))
    np.testing.assert_allclose(result.confidence_intervals(0.95),
                               np.column_stack([result.popt - t * perr, result.popt + t * perr]))
    with pytest.raises(ValueError, match="alpha"):
        result.confidence_intervals(95)


def test_multistart_diagnostics_under_nlsqs_names():
    x = np.linspace(0, 4, 500)
    y = 2.0 * np.exp(-1.3 * x) + 0.5
    single = nlsq_dask.fit(expo, x, y, p0=[1, 1, 0])
    d = single.multistart_diagnostics
    assert d["bypassed"] is True and d["n_starts_evaluated"] == 0
    assert d["n_starts_configured"] == 0
    multi = nlsq_dask.fit(expo, x, y, p0=[1, 1, 0], bounds=([0, 0, -1], [5, 5, 2]),
                          preset="robust")
    d = multi.multistart_diagnostics
    assert d["bypassed"] is False and d["n_starts_configured"] == 5
    assert d["n_starts_evaluated"] == 5 and 1 <= d["n_starts_successful"] <= 5
    assert d["sampler"] == multi.config.sampler and d["best_loss"] == multi.cost
    assert d["all_losses"] == sorted(d["all_losses"])
    np.testing.assert_allclose(min(d["all_losses"]), multi.cost, rtol=1e-6, atol=1e-20)
