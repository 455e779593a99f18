"""``nlsq_dask.fit`` agrees with ``scipy.optimize.curve_fit`` on generated data.

Eight model families, each fitted without bounds (scipy 'lm'), with bounds (scipy 'trf'),
with sigma (absolute_sigma False and True) and with robust losses (scipy 'trf' with the
same loss and f_scale, data with outliers). The optimum and curve_fit's covariance must
match: popt to 1e-6 and pcov to 1e-5 relative. Each model is defined once at module level
so that the jitted solve is reused between the tests of a family.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit

import nlsq_dask

TOL = {"ftol": 1e-12, "xtol": 1e-12, "gtol": 1e-12}
LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")


# --- model families: the same expression for jax.numpy (ours) and numpy (scipy) ----------

def _exp_decay(xp):
    def f(x, a, b, c):
        return a * xp.exp(-b * x) + c
    return f


def _gaussian(xp):
    def f(x, amp, mu, sig, c):
        return amp * xp.exp(-((x - mu) ** 2) / (2 * sig**2)) + c
    return f


def _lorentzian(xp):
    def f(x, amp, x0, gamma, c):
        return amp * gamma**2 / ((x - x0) ** 2 + gamma**2) + c
    return f


def _power_law(xp):
    def f(x, a, b):
        return a * x**b
    return f


def _logistic(xp):
    def f(x, top, k, x0):
        return top / (1 + xp.exp(-k * (x - x0)))
    return f


def _damped_sine(xp):
    def f(x, amp, tau, omega, phi):
        return amp * xp.exp(-x / tau) * xp.sin(omega * x + phi)
    return f


def _gauss2d(xp):
    def f(x, amp, x0, y0, sx, sy, c):
        return amp * xp.exp(-((x[0] - x0) ** 2) / (2 * sx**2)
                            - ((x[1] - y0) ** 2) / (2 * sy**2)) + c
    return f


def _rational(xp):
    def f(x, a, b, c):
        return (a + b * x) / (1 + c * x)
    return f


@dataclass
class Family:
    name: str
    jax_model: object
    np_model: object
    x: np.ndarray
    truth: np.ndarray
    p0: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    noise: float

    def clean(self):
        return self.np_model(self.x, *self.truth)

    def jac(self, x, *p):
        """Exact Jacobian for scipy (so its pcov is not limited by finite differences)."""
        return np.asarray(jax.jacfwd(lambda q: self.jax_model(jnp.asarray(x), *q))(
            jnp.asarray(p, dtype=float))).reshape(-1, len(p))


def _family(name, maker, x, truth, p0, lb, ub, noise):
    return Family(name, maker(jnp), maker(np), np.asarray(x, float), np.asarray(truth, float),
                  np.asarray(p0, float), np.asarray(lb, float), np.asarray(ub, float), noise)


def _grid2d(n):
    g = np.linspace(-3, 3, n)
    gx, gy = np.meshgrid(g, g)
    return np.vstack([gx.ravel(), gy.ravel()])


FAMILIES = {f.name: f for f in [
    _family("exp_decay", _exp_decay, np.linspace(0, 5, 600), [3.0, 1.3, 0.5], [1.0, 1.0, 0.0],
            [0, 0, -1], [10, 5, 2], 0.02),
    _family("gaussian", _gaussian, np.linspace(-5, 5, 800), [4.0, 0.7, 1.1, 0.3],
            [3.0, 0.5, 1.5, 0.0], [0, -2, 0.1, -1], [10, 2, 5, 1], 0.03),
    _family("lorentzian", _lorentzian, np.linspace(-6, 6, 700), [5.0, 1.0, 0.7, 0.2],
            [4.0, 0.8, 1.0, 0.0], [0, -2, 0.05, -1], [10, 3, 3, 1], 0.04),
    _family("power_law", _power_law, np.linspace(1, 10, 400), [2.5, -1.3], [1.0, -1.0],
            [0, -3], [10, 0], 0.005),
    _family("logistic", _logistic, np.linspace(-6, 6, 500), [3.0, 1.2, 0.5], [2.0, 1.0, 0.0],
            [0, 0.1, -2], [10, 5, 2], 0.03),
    _family("damped_sine", _damped_sine, np.linspace(0, 10, 1000), [2.0, 3.0, 2.5, 0.4],
            [1.5, 2.0, 2.45, 0.2], [0, 0.5, 2, -1], [5, 10, 3, 1.5], 0.03),
    _family("gauss2d", _gauss2d, _grid2d(40), [3.0, 0.3, -0.4, 0.9, 1.3, 0.1],
            [2.0, 0.0, 0.0, 1.0, 1.0, 0.0], [0, -1, -1, 0.2, 0.2, -1], [10, 1, 1, 3, 3, 1],
            0.03),
    _family("rational", _rational, np.linspace(0, 5, 300), [1.0, 2.0, 0.5], [0.5, 1.0, 1.0],
            [-5, -5, 0], [5, 5, 3], 0.01),
]}
NAMES = list(FAMILIES)


def _data(fam: Family, seed: int, outliers: bool = False, hetero: bool = False):
    rng = np.random.default_rng(seed)
    y0 = fam.clean()
    n = y0.size
    sigma = fam.noise * (1 + np.linspace(0, 1, n)) if hetero else np.full(n, fam.noise)
    y = y0 + sigma * rng.standard_normal(n)
    if outliers:
        idx = rng.choice(n, size=n // 20, replace=False)
        y[idx] += rng.choice([-1, 1], idx.size) * fam.noise * rng.uniform(10, 30, idx.size)
    return y, sigma


def assert_match(res, popt, pcov):
    popt, pcov = np.asarray(popt), np.asarray(pcov)
    np.testing.assert_allclose(res.popt, popt, rtol=1e-6, atol=1e-10 * np.abs(popt).max(),
                               err_msg="popt")
    var, var_ref = np.diag(res.pcov), np.diag(pcov)
    np.testing.assert_allclose(var, var_ref, rtol=1e-5, err_msg="diag(pcov)")
    # off-diagonals as correlations, so that entries near zero compare on the right scale
    d = np.sqrt(var_ref)
    np.testing.assert_allclose(res.pcov / np.outer(d, d), pcov / np.outer(d, d), rtol=1e-5,
                               atol=1e-6, err_msg="pcov (as correlations)")


# --- tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_unbounded_matches_lm(name):
    fam = FAMILIES[name]
    y, _ = _data(fam, seed=1)
    res = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, **TOL)
    popt, pcov = curve_fit(fam.np_model, fam.x, y, p0=fam.p0, jac=fam.jac, **TOL)
    assert res.success and res.tier.value == "standard"
    assert res.n_points_used == y.size
    assert_match(res, popt, pcov)
    # the fit recovers the truth within a few standard errors
    assert np.all(np.abs(res.popt - fam.truth) < 6 * res.perr)


@pytest.mark.parametrize("name", NAMES)
def test_bounded_matches_trf(name):
    fam = FAMILIES[name]
    y, _ = _data(fam, seed=2)
    bounds = (fam.lb, fam.ub)
    res = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, bounds=bounds, **TOL)
    popt, pcov = curve_fit(fam.np_model, fam.x, y, p0=fam.p0, bounds=bounds, jac=fam.jac,
                           method="trf", **TOL)
    assert np.all((res.popt >= fam.lb) & (res.popt <= fam.ub))
    assert_match(res, popt, pcov)


def test_active_bound_matches_trf():
    """The unconstrained optimum of the offset is 0.5; an upper bound of 0.4 is active."""
    fam = FAMILIES["exp_decay"]
    y, _ = _data(fam, seed=3)
    bounds = ([0, 0, -1], [10, 5, 0.4])
    res = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, bounds=bounds, **TOL)
    popt, pcov = curve_fit(fam.np_model, fam.x, y, p0=fam.p0, bounds=bounds, jac=fam.jac,
                           method="trf", **TOL)
    assert popt[2] == pytest.approx(0.4, abs=1e-8)
    assert res.popt[2] <= 0.4
    assert_match(res, popt, pcov)


@pytest.mark.parametrize("absolute_sigma", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_sigma(name, absolute_sigma):
    fam = FAMILIES[name]
    y, sigma = _data(fam, seed=4, hetero=True)
    res = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, sigma=sigma,
                        absolute_sigma=absolute_sigma, **TOL)
    popt, pcov = curve_fit(fam.np_model, fam.x, y, p0=fam.p0, sigma=sigma,
                           absolute_sigma=absolute_sigma, jac=fam.jac, **TOL)
    assert_match(res, popt, pcov)
    chi2 = np.sum(((fam.np_model(fam.x, *popt) - y) / sigma) ** 2)
    assert res.chi2 == pytest.approx(chi2, rel=1e-9)
    assert res.reduced_chi2 == pytest.approx(chi2 / (y.size - fam.p0.size), rel=1e-9)


def test_absolute_sigma_scales_pcov_by_reduced_chi2():
    fam = FAMILIES["gaussian"]
    y, sigma = _data(fam, seed=4, hetero=True)
    rel = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, sigma=sigma, **TOL)
    ab = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, sigma=sigma, absolute_sigma=True,
                       **TOL)
    np.testing.assert_allclose(rel.popt, ab.popt, rtol=1e-12)
    np.testing.assert_allclose(rel.pcov, ab.pcov * rel.reduced_chi2, rtol=1e-10)


# every loss on one family, and each robust loss once more on another family (each
# (model, loss) pair is one compilation, so the matrix is kept small)
ROBUST_CASES = ([(loss, "exp_decay") for loss in LOSSES]
                + [("soft_l1", "gaussian"), ("huber", "lorentzian"), ("cauchy", "gauss2d"),
                   ("arctan", "damped_sine")])


@pytest.mark.parametrize("loss, name", ROBUST_CASES)
def test_robust_loss_matches_trf(loss, name):
    fam = FAMILIES[name]
    y, _ = _data(fam, seed=5, outliers=True)
    f_scale = 2.0 * fam.noise
    res = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, loss=loss, f_scale=f_scale, **TOL)
    popt, pcov = curve_fit(fam.np_model, fam.x, y, p0=fam.p0, jac=fam.jac, method="trf",
                           loss=loss, f_scale=f_scale, **TOL)
    assert res.config.loss == loss
    assert_match(res, popt, pcov)


def test_robust_loss_resists_outliers():
    fam = FAMILIES["exp_decay"]
    y, _ = _data(fam, seed=5, outliers=True)
    lin = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, **TOL)
    rob = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, loss="soft_l1",
                        f_scale=2 * fam.noise, **TOL)
    assert np.abs(rob.popt - fam.truth).max() < np.abs(lin.popt - fam.truth).max()


def test_x_as_tuple_of_arrays():
    fam = FAMILIES["gauss2d"]
    y, _ = _data(fam, seed=6)

    def model(x, amp, x0, y0, sx, sy, c):
        u, v = x  # x arrives as the tuple that was passed in
        return amp * jnp.exp(-((u - x0) ** 2) / (2 * sx**2) - ((v - y0) ** 2) / (2 * sy**2)) + c

    res = nlsq_dask.fit(model, (fam.x[0], fam.x[1]), y, p0=fam.p0, **TOL)
    stacked = nlsq_dask.fit(fam.jax_model, fam.x, y, p0=fam.p0, **TOL)
    popt, pcov = curve_fit(fam.np_model, fam.x, y, p0=fam.p0, jac=fam.jac, **TOL)
    assert_match(res, popt, pcov)
    np.testing.assert_allclose(res.popt, stacked.popt, rtol=1e-12)
    assert res.param_names == ("amp", "x0", "y0", "sx", "sy", "c")
