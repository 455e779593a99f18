"""STANDARD tier (whole LM loop jitted): compile reuse, history, pass counts, closed forms."""

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import nlsq_dask
from kernel_counts import compile_count

REPO = Path(nlsq_dask.__file__).resolve().parents[1]


def decay(x, a, b, c):  # module level: one function object, one cache entry
    return a * jnp.exp(-b * x) + c


def line(x, a, b):
    return a + b * x


def _decay_data(n, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, n)
    return x, 2.0 * np.exp(-0.9 * x) + 0.3 + 0.01 * rng.standard_normal(n)


# --- (a) compilation is reused -----------------------------------------------------------

def rise(x, a, b, c):  # computed by no other test: kernels are shared by what models compute
    return c - a * jnp.expm1(-b * x) - a


def test_same_shapes_do_not_recompile():
    decay = rise
    x, y = _decay_data(300, seed=0)
    kw = {"p0": [1.0, 1.0, 0.0], "ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10}
    n0 = compile_count()
    first = nlsq_dask.fit(decay, x, y, **kw)
    n1 = compile_count()
    assert n1 - n0 <= 1

    again = nlsq_dask.fit(decay, x, y, **kw)
    assert compile_count() == n1, "same model and data recompiled"
    np.testing.assert_array_equal(again.popt, first.popt)

    x2, y2 = _decay_data(300, seed=1)
    other = nlsq_dask.fit(decay, x2 * 1.1, y2 * 2.0, **kw)
    assert compile_count() == n1, "new data values of the same length recompiled"
    assert not np.allclose(other.popt, first.popt)

    # p0, tolerances and bounds are dynamic arguments too
    nlsq_dask.fit(decay, x, y, p0=[2.0, 0.5, 0.1], ftol=1e-8, xtol=1e-9, gtol=1e-9,
                  bounds=([0, 0, -1], [5, 5, 1]))
    assert compile_count() == n1, "p0/tolerances/bounds recompiled"

    # a weighted fit is its own kernel (unit weights read no array at all), compiled
    # once: other sigma values reuse it
    nlsq_dask.fit(decay, x, y, sigma=np.full(300, 0.01), **kw)
    n2 = compile_count()
    assert n2 == n1 + 1
    nlsq_dask.fit(decay, x, y, sigma=np.linspace(0.01, 0.02, 300), **kw)
    assert compile_count() == n2, "new sigma values recompiled"


def test_lengths_with_the_same_padded_length_do_not_recompile():
    x, y = _decay_data(203, seed=2)  # tile 208 for 201..208 points
    kw = {"p0": [1.0, 1.0, 0.0], "ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10}
    nlsq_dask.fit(decay, x, y, **kw)
    n1 = compile_count()
    res = nlsq_dask.fit(decay, x[:-2], y[:-2], **kw)
    assert compile_count() == n1
    assert res.n_points_used == 201


# --- (b) history and (c) pass counts -------------------------------------------------------

@pytest.fixture(scope="module")
def decay_fit():
    x, y = _decay_data(300, seed=3)
    p0 = np.array([1.0, 1.0, 0.0])
    return x, y, p0, nlsq_dask.fit(decay, x, y, p0=p0, ftol=1e-10, xtol=1e-10, gtol=1e-10)


def test_history_starts_at_p0_and_ends_at_popt(decay_fit):
    x, y, p0, res = decay_fit
    hist = res.history
    cost0 = 0.5 * np.sum((np.asarray(decay(x, *p0)) - y) ** 2)
    assert hist[0]["cost"] == pytest.approx(cost0, rel=1e-12)
    np.testing.assert_array_equal(hist[0]["params"], p0)
    assert hist[0]["nfev"] == 1
    np.testing.assert_array_equal(hist[-1]["params"], res.popt)
    assert hist[-1]["cost"] == pytest.approx(res.cost, rel=1e-14)
    assert [h["iteration"] for h in hist] == list(range(len(hist)))
    assert len(hist) == res.nit + 1


def test_history_costs_non_increasing(decay_fit):
    costs = np.array([h["cost"] for h in decay_fit[3].history])
    assert np.all(np.diff(costs) <= 0), costs
    assert costs[-1] < costs[0]


def test_nfev_counts_passes(decay_fit):
    res = decay_fit[3]
    assert res.success
    assert res.nit >= 1
    assert res.nfev >= res.nit + 1
    nfev = [h["nfev"] for h in res.history]
    assert nfev == sorted(nfev) and len(set(nfev)) == len(nfev)
    assert nfev[-1] <= res.nfev


def test_max_nfev_stops_with_a_warning():
    x, y = _decay_data(300, seed=4)
    with pytest.warns(nlsq_dask.FitWarning, match="max_nfev"):
        res = nlsq_dask.fit(decay, x, y, p0=[1.0, 1.0, 0.0], max_nfev=3)
    assert res.status == 0 and not res.success
    assert res.nfev == 3


# --- (d) closed form: the straight line ---------------------------------------------------

def test_straight_line_equals_ols():
    rng = np.random.default_rng(5)
    x = np.linspace(-3, 7, 250)
    y = 1.5 - 0.8 * x + 0.2 * rng.standard_normal(x.size)
    res = nlsq_dask.fit(line, x, y, p0=[0.0, 0.0], ftol=1e-14, xtol=1e-14, gtol=1e-14)
    b, a = np.polyfit(x, y, 1)
    np.testing.assert_allclose(res.popt, [a, b], rtol=1e-10)

    X = np.column_stack([np.ones_like(x), x])
    rss = np.sum((y - X @ np.array([a, b])) ** 2)
    s2 = rss / (x.size - 2)
    np.testing.assert_allclose(res.pcov, s2 * np.linalg.inv(X.T @ X), rtol=1e-9)
    assert res.chi2 == pytest.approx(rss, rel=1e-10)
    assert res.dof == x.size - 2
    assert res.reduced_chi2 == pytest.approx(s2, rel=1e-10)
    assert res.param_names == ("a", "b")


def test_straight_line_with_sigma_equals_weighted_ols():
    rng = np.random.default_rng(6)
    x = np.linspace(0, 10, 120)
    sigma = 0.1 + 0.05 * x
    y = 2.0 + 0.5 * x + sigma * rng.standard_normal(x.size)
    res = nlsq_dask.fit(line, x, y, p0=[1.0, 1.0], sigma=sigma, absolute_sigma=True,
                        ftol=1e-14, xtol=1e-14, gtol=1e-14)
    X = np.column_stack([np.ones_like(x), x]) / sigma[:, None]
    beta = np.linalg.solve(X.T @ X, X.T @ (y / sigma))
    np.testing.assert_allclose(res.popt, beta, rtol=1e-10)
    np.testing.assert_allclose(res.pcov, np.linalg.inv(X.T @ X), rtol=1e-9)


# --- (e) the result unpacks like curve_fit -------------------------------------------------

def test_result_unpacks_as_popt_pcov(decay_fit):
    x, y, p0, res = decay_fit
    popt, pcov = nlsq_dask.fit(decay, x, y, p0=p0, ftol=1e-10, xtol=1e-10, gtol=1e-10)
    assert isinstance(popt, np.ndarray) and popt.shape == (3,)
    assert isinstance(pcov, np.ndarray) and pcov.shape == (3, 3)
    np.testing.assert_array_equal(popt, res.popt)
    np.testing.assert_array_equal(pcov, res.pcov)
    np.testing.assert_allclose(res.perr, np.sqrt(np.diag(pcov)))
    assert res.tier.value == "standard"
    assert res.params == dict(zip(("a", "b", "c"), popt.tolist()))


# --- (f) imports stay light ----------------------------------------------------------------

HEAVY = ("jax", "dask", "distributed", "xarray", "scipy.optimize")  # all imported when needed


@pytest.mark.parametrize("module", ["nlsq_dask", "nlsq_dask.workflow"])
def test_import_does_not_pull_in_jax_or_dask(module):
    code = (f"import sys, {module}, nlsq_dask\n"
            f"assert nlsq_dask.__file__ == {str(REPO / 'nlsq_dask' / '__init__.py')!r}, "
            "nlsq_dask.__file__\n"
            "assert callable(nlsq_dask.fit)\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stderr
