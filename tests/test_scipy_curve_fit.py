"""``nlsq_dask.curve_fit`` against scipy's own ``TestCurveFit`` (issue 15).

One test here per test of scipy's ``scipy/optimize/tests/test_minpack.py::TestCurveFit``
(named ``test_scipy_<name>``), written for this package: models in ``jax.numpy``, the
same data and scipy's tolerances, on numpy inputs and on dask inputs (``DASK`` runs the
dask tiers, several partitions). Where scipy's test relies on something this package does
differently on purpose, the counterpart tests our behaviour and says why.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_almost_equal, assert_array_equal
from scipy.optimize import Bounds, OptimizeWarning
from scipy.optimize import curve_fit as scipy_curve_fit

jnp = pytest.importorskip("jax.numpy")
da = pytest.importorskip("dask.array")

import nlsq_dask  # noqa: E402
from nlsq_dask import NotPointwiseError, curve_fit  # noqa: E402

X4 = np.array([1.0, 2.0, 3.0, 4.0])
Y4 = np.array([1.0, 3.2, 9.5, 13.7])
KINDS = ["numpy", "dask"]


def data(kind, *arrays, chunks=None):
    """The arrays as given (numpy) or as dask arrays of at least two partitions."""
    if kind == "numpy":
        return arrays if len(arrays) > 1 else arrays[0]
    out = []
    for a in arrays:
        a = np.asarray(a, dtype=float)
        n = a.shape[-1]
        c = chunks or max(1, -(-n // 3))
        out.append(da.from_array(a, chunks=a.shape[:-1] + (c,)))
    return tuple(out) if len(out) > 1 else out[0]


def tier(kind):
    return {} if kind == "numpy" else {"tier": "chunked"}


def expo(x, a, b):
    return a * jnp.exp(-b * x)


def expo_jac(x, a, b):
    e = jnp.exp(-b * x)
    return jnp.stack([e, -a * x * e], axis=-1)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_one_argument(kind):
    x, y = data(kind, X4, Y4)
    popt, pcov = curve_fit(lambda x, a: x**a, x, y, **tier(kind))
    assert len(popt) == 1 and pcov.shape == (1, 1)
    assert_almost = dict(decimal=4)
    np.testing.assert_almost_equal(popt[0], 1.9149, **assert_almost)
    np.testing.assert_almost_equal(pcov[0, 0], 0.0016, **assert_almost)
    popt2, pcov2, infodict, errmsg, ier = curve_fit(lambda x, a: x**a, x, y, full_output=1,
                                                    check_finite=False, **tier(kind))
    assert_array_almost_equal(popt, popt2)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_two_argument(kind):
    x, y = data(kind, X4, Y4)
    popt, pcov = curve_fit(lambda x, a, b: b * x**a, x, y, **tier(kind))
    assert len(popt) == 2 and pcov.shape == (2, 2)
    assert_array_almost_equal(popt, [1.7989, 1.1642], decimal=4)
    assert_array_almost_equal(pcov, [[0.0852, -0.1260], [-0.1260, 0.1912]], decimal=4)


def test_scipy_func_is_classmethod():
    class Model:
        def func(self, x, a, b):
            return b * x**a

    popt, pcov = curve_fit(Model().func, X4, Y4)
    assert pcov.shape == (2, 2)
    assert_array_almost_equal(popt, [1.7989, 1.1642], decimal=4)
    assert_array_almost_equal(pcov, [[0.0852, -0.1260], [-0.1260, 0.1912]], decimal=4)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_regression_2639(kind):
    x = np.array([574.142, 574.154, 574.165, 574.177, 574.188, 574.199, 574.211, 574.222,
                  574.234, 574.245])
    y = np.array([859.0, 997.0, 1699.0, 2604.0, 2013.0, 1964.0, 2435.0, 1550.0, 949.0, 841.0])
    guess = [574.1861428571428, 574.2155714285715, 1302.0, 1302.0, 0.0035019999999983615, 859.0]
    good = [5.74177150e02, 5.74209188e02, 1.74187044e03, 1.58646166e03, 1.0068462e-02,
            8.57450661e02]

    def f_double_gauss(x, x0, x1, A0, A1, sigma, c):
        return (A0 * jnp.exp(-(x - x0)**2 / (2.0 * sigma**2))
                + A1 * jnp.exp(-(x - x1)**2 / (2.0 * sigma**2)) + c)

    popt, _ = curve_fit(f_double_gauss, *data(kind, x, y), guess, maxfev=10000, **tier(kind))
    assert_allclose(popt, good, rtol=1e-5)


@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
@pytest.mark.parametrize("kind", KINDS)
def test_scipy_pcov(kind, method):
    xdata = np.array([0, 1, 2, 3, 4, 5.0])
    ydata = np.array([1, 1, 5, 7, 8, 12.0])
    sigma = np.array([1, 2, 1, 2, 1, 2.0])

    def f(x, a, b):
        return a * x + b

    x, y, s = data(kind, xdata, ydata, sigma)
    for scale, absolute, expect in [(1, False, [0.20659803, 0.57204404]),
                                    (3, False, [0.20659803, 0.57204404]),
                                    (1, True, [0.30714756, 0.85045308]),
                                    (3, True, [3 * 0.30714756, 3 * 0.85045308])]:
        _, pcov = curve_fit(f, x, y, p0=[2, 0], sigma=scale * s, absolute_sigma=absolute,
                            method=method, **tier(kind))
        assert_allclose(np.sqrt(np.diag(pcov)), expect, rtol=1e-3)

    # infinite variances: a parameter the model ignores, or as many points as parameters
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=OptimizeWarning)
        _, pcov = curve_fit(lambda x, a, b: a * x, x, y, p0=[2, 0], sigma=s, **tier(kind))
        _, pcov1 = curve_fit(f, xdata[:2], ydata[:2], p0=[2, 0])
    assert pcov.shape == (2, 2) and pcov1.shape == (2, 2)
    assert_array_equal(pcov1, np.full((2, 2), np.inf))
    # scipy: all of pcov is inf. Here only the ignored parameter's row and column are inf
    # (issue 13): 'a' is determined by the data, and its variance is scipy's 1-parameter one
    # scaled by the reduced chi2 with N - 2 degrees of freedom (both parameters count)
    assert np.isinf(pcov[1]).all() and np.isinf(pcov[:, 1]).all() and np.isfinite(pcov[0, 0])
    _, one = scipy_curve_fit(lambda x, a: a * x, xdata, ydata, p0=[2], sigma=sigma)
    assert_allclose(pcov[0, 0], one[0, 0] * (6 - 1) / (6 - 2), rtol=1e-6)


def test_scipy_array_like():
    popt = curve_fit(lambda x, a, b: a * x + b, [1, 2, 3, 4], [3, 5, 7, 9])[0]
    assert_allclose(popt, [2, 1], atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_indeterminate_covariance(kind):
    x, y = data(kind, np.array([1, 2, 3, 4, 5, 6.0]), np.array([1, 2, 3, 4, 5.5, 6]))
    with pytest.warns(OptimizeWarning):
        curve_fit(lambda x, a, b: a * x, x, y, **tier(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_NaN_handling(kind):
    xdata, ydata = np.array([1, np.nan, 3]), np.array([1, 2, 3.0])
    x, y = data(kind, xdata, ydata, chunks=2)
    with pytest.raises(ValueError):
        curve_fit(lambda x, a, b: a * x + b, x, y, **tier(kind))
    with pytest.raises(ValueError):
        curve_fit(lambda x, a, b: a * x + b, y, x, **tier(kind))
    with pytest.raises(ValueError):
        curve_fit(lambda x, a, b: a * x + b, x, y, check_finite=True, **tier(kind))


def _check_nan_policy(f, x_nan, x_clean, y_nan, y_clean, method, kind):
    kwargs = {"f": f, "xdata": data(kind, x_nan), "ydata": data(kind, y_nan), "method": method,
              "check_finite": False, **tier(kind)}
    with pytest.raises(ValueError, match="`nan_policy='propagate'` is not supported by this "
                                         "function."):
        curve_fit(**kwargs, nan_policy="propagate", maxfev=2000)
    with pytest.raises(ValueError, match="The input contains nan|NaN or inf"):
        curve_fit(**kwargs, nan_policy="raise")
    with_nan, _ = curve_fit(**kwargs, nan_policy="omit")
    without, _ = curve_fit(f, x_clean, y_clean, method=method)
    assert_allclose(with_nan, without)
    with pytest.raises(ValueError, match=r"nan_policy must be one of \{(?:'raise'|'omit'|None)"
                                         r"(?:, ?(?:'raise'|'omit'|None))*\}"):
        curve_fit(**kwargs, nan_policy="hi")


@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
@pytest.mark.parametrize("kind", KINDS)
def test_scipy_nan_policy_1d(kind, method):
    _check_nan_policy(lambda x, a, b: a * x + b, np.array([2, 3, np.nan, 4, 4, np.nan]),
                      np.array([2, 3, 4.0]), np.array([1, 2, 5, 3, np.nan, 7]),
                      np.array([1, 2, 3.0]), method, kind)


@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
@pytest.mark.parametrize("kind", KINDS)
def test_scipy_nan_policy_2d(kind, method):
    _check_nan_policy(lambda x, a, b: a * x[0, :] + b + x[1, :],
                      np.array([[2, 3, np.nan, 4, 4, np.nan, 5], [2, 3, np.nan, np.nan, 4, np.nan, 7]]),
                      np.array([[2, 3, 5], [2, 3, 7.0]]), np.array([1, 2, 5, 3, np.nan, 7, 10]),
                      np.array([1, 2, 10.0]), method, kind)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
@pytest.mark.parametrize("kind", KINDS)
def test_scipy_nan_policy_2_3d(kind, method, n):
    def f(x, a, b):
        return a * x[..., 0, :].squeeze() + b + x[..., 1, :].squeeze()

    x_nan = np.array([[[2, 3, np.nan, 4, 4, np.nan, 5], [2, 3, np.nan, np.nan, 4, np.nan, 7]]])
    x_nan = x_nan.squeeze() if n == 2 else x_nan
    _check_nan_policy(f, x_nan, np.array([[[2, 3, 5], [2, 3, 7.0]]]),
                      np.array([1, 2, 5, 3, np.nan, 7, 10]), np.array([1, 2, 10.0]), method, kind)


def test_scipy_empty_inputs():
    for args, kw in [(([], []), {}), (([], []), {"bounds": (1, 2)}), (([1], []), {}),
                     (([2], []), {"bounds": (1, 2)})]:
        with pytest.raises(ValueError):
            curve_fit(lambda x, a: a * x, *args, **kw)


def test_scipy_function_zero_params():
    with pytest.raises(ValueError, match="Unable to determine number of fit parameters"):
        curve_fit(lambda x: x, [1, 2], [3, 4])


def test_scipy_None_x():
    # scipy's model closes over np.arange(10), one value per point: not pointwise, so it
    # is refused here. With xdata=None the model gets the point index, which is pointwise.
    with pytest.raises(NotPointwiseError):
        curve_fit(lambda _, a: a * jnp.arange(10.0), None, 2 * np.arange(10))
    popt, _ = curve_fit(lambda i, a: a * i, None, 2 * np.arange(10))
    assert_allclose(popt, [2.0])


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_method_argument(kind):
    xdata = np.linspace(0, 1, 11)
    x, y = data(kind, xdata, 2 * np.exp(-2 * xdata))
    for method in ["trf", "dogbox", "lm", None]:
        popt, _ = curve_fit(expo, x, y, method=method, **tier(kind))
        assert_allclose(popt, [2.0, 2.0])
    with pytest.raises(ValueError):
        curve_fit(expo, x, y, method="unknown")


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_full_output(kind):
    xdata = np.linspace(0, 1, 11)
    x, y = data(kind, xdata, 2 * np.exp(-2 * xdata))
    for method in ["trf", "dogbox", "lm", None]:
        popt, pcov, infodict, errmsg, ier = curve_fit(expo, x, y, method=method,
                                                      full_output=True, **tier(kind))
        assert_allclose(popt, [2.0, 2.0])
        assert "nfev" in infodict and "fvec" in infodict
        # scipy's 'lm' adds MINPACK's fjac, ipvt and qtf: this package runs no MINPACK
        assert isinstance(errmsg, str) and ier in (1, 2, 3, 4)
        fvec = np.asarray(infodict["fvec"])     # lazy for dask data until asked
        assert fvec.shape == (11,) and np.abs(fvec).max() < 1e-8


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_bounds(kind):
    xdata = np.linspace(0, 1, 11)
    x, y = data(kind, xdata, 2 * np.exp(-2 * xdata))
    lb, ub = [1.0, 0], [1.5, 3.0]
    for method in [None, "trf", "dogbox"]:
        popt, _ = curve_fit(expo, x, y, bounds=(lb, ub), method=method, **tier(kind))
        assert_allclose(popt[0], 1.5)
        popt_class, _ = curve_fit(expo, x, y, bounds=Bounds(lb, ub), method=method, **tier(kind))
        assert_allclose(popt_class, popt)
    popt, _ = curve_fit(expo, x, y, method="trf", bounds=([0.0, 0], [0.6, np.inf]), **tier(kind))
    assert_allclose(popt[0], 0.6)
    with pytest.raises(ValueError, match="Method 'lm' only works for unconstrained problems"):
        curve_fit(expo, x, y, bounds=(lb, ub), method="lm")


def test_scipy_bounds_p0():
    xdata = np.linspace(-2 * np.pi, 2 * np.pi, 40)
    ydata = np.sin(xdata)
    for method in ["trf", "dogbox"]:
        popt_1, _ = curve_fit(lambda x, a: jnp.sin(x + a), xdata, ydata, p0=2.1 * np.pi)
        popt_2, _ = curve_fit(lambda x, a: jnp.sin(x + a), xdata, ydata, p0=2.1 * np.pi,
                              bounds=(-3 * np.pi, 3 * np.pi), method=method)
        assert_allclose(popt_1, popt_2)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_jac(kind):
    xdata = np.linspace(0, 1, 11)
    ydata = 2 * np.exp(-2 * xdata)
    x, y = data(kind, xdata, ydata)
    for method in ["trf", "dogbox"]:
        for scheme in ["2-point", "3-point", "cs"]:
            popt, _ = curve_fit(expo, x, y, jac=scheme, method=method, **tier(kind))
            assert_allclose(popt, [2, 2])
    for method in ["lm", "trf", "dogbox"]:
        popt, _ = curve_fit(expo, x, y, method=method, jac=expo_jac, **tier(kind))
        assert_allclose(popt, [2, 2])
    ydata[5] = 100
    sigma = np.ones(11)
    sigma[5] = 200
    x, y, s = data(kind, xdata, ydata, sigma)
    for method in ["lm", "trf", "dogbox"]:
        popt, _ = curve_fit(expo, x, y, sigma=s, method=method, jac=expo_jac, **tier(kind))
        assert_allclose(popt, [2, 2], rtol=1e-3)


def test_jac_callable_is_used_instead_of_autodiff():
    """A wrong Jacobian changes the iterates: proof that the callable is what runs."""
    xdata = np.linspace(0, 1, 11)
    ydata = 2 * np.exp(-2 * xdata)
    good = nlsq_dask.fit(expo, xdata, ydata, jac=expo_jac)
    bad = nlsq_dask.fit(expo, xdata, ydata, max_nfev=20,
                        jac=lambda x, a, b: 0.5 * expo_jac(x, a, b))
    assert good.nfev != bad.nfev
    assert_allclose(good.jac, np.asarray(expo_jac(xdata, *good.popt)), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_maxfev_and_bounds(kind):
    xd = np.arange(0, 10.0)
    x, y = data(kind, xd, 2 * xd)
    popt1, _ = curve_fit(lambda x, p: p * x, x, y, bounds=(0, 3), maxfev=100, **tier(kind))
    popt2, _ = curve_fit(lambda x, p: p * x, x, y, bounds=(0, 3), max_nfev=100, **tier(kind))
    assert_allclose(popt1, 2, atol=1e-14)
    assert_allclose(popt2, 2, atol=1e-14)


@pytest.mark.parametrize("sigma_dim", [0, 1, 2])
def test_scipy_curvefit_omitnan(sigma_dim):
    def exponential(x, a, b):
        return b * jnp.exp(a * x)

    rng = np.random.default_rng(578285731148908)
    N = 100
    x = np.linspace(1, 10, N)
    y = 0.5 * np.exp(0.2 * x)
    if sigma_dim == 0:
        sigma = 0.05
        y += rng.normal(0, sigma, N)
    elif sigma_dim == 1:
        sigma = x * 0.05
        y += rng.normal(0, sigma, N)
    else:
        a = rng.normal(0, 2, (N, N))
        sigma = a @ a.T
        y += rng.multivariate_normal(np.zeros_like(x), sigma)
    i_x, i_y = rng.integers(N, size=5), rng.integers(N, size=5)
    x[i_x] = np.nan
    y[i_y] = np.nan
    res_opt, res_cov = curve_fit(exponential, x, y, p0=[0.1, 1.0], sigma=sigma, nan_policy="omit")
    keep = np.setdiff1d(np.arange(N), np.concatenate([i_x, i_y]))
    sig = np.asarray(sigma)
    sig = sig if sig.ndim == 0 else sig[keep] if sig.ndim == 1 else sig[np.ix_(keep, keep)]
    ref_opt, ref_cov = curve_fit(exponential, x[keep], y[keep], p0=[0.1, 1.0], sigma=sig)
    assert_allclose(res_opt, ref_opt, atol=1e-14)
    assert_allclose(res_cov, ref_cov, atol=1e-14)
    # and scipy's answer (converged tightly: at its default tolerances scipy stops 2e-9 in
    # cost short of the optimum of the correlated case, 4e-4 away in the parameters; ours
    # ends within 1e-4, 1.7e-5 with numpy 2.4's draws of this data)
    s_opt, s_cov = scipy_curve_fit(lambda x, a, b: b * np.exp(a * x), x[keep], y[keep],
                                   p0=[0.1, 1.0], sigma=sig, xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert_allclose(res_opt, s_opt, rtol=1e-4)
    assert_allclose(res_cov, s_cov, rtol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_curvefit_simplecovariance(kind):
    rng = np.random.default_rng(123)
    xdata = np.linspace(0, 4, 50)
    ydata = 2.5 * np.exp(-1.3 * xdata) + 0.2 * rng.standard_normal(size=50)
    sigma = np.zeros(50) + 0.2
    covar = np.diag(sigma**2)
    x, y, s = data(kind, xdata, ydata, sigma)
    for jac in (expo_jac, None):
        for absolute_sigma in (False, True):
            popt1, pcov1 = curve_fit(expo, x, y, sigma=s, jac=jac, absolute_sigma=absolute_sigma,
                                     **tier(kind))
            popt2, pcov2 = curve_fit(expo, x, y, sigma=covar, jac=jac,
                                     absolute_sigma=absolute_sigma, **tier(kind))
            assert_allclose(popt1, popt2, atol=1e-14)
            assert_allclose(pcov1, pcov2, atol=1e-14)


def test_scipy_curvefit_covariance():
    """scipy rotates the data and the model's values across points (``rotn.dot``), which is
    not pointwise; here the correlated-data half of the test: a full covariance matrix,
    whitened by its Cholesky factor as scipy does, gives scipy's answer."""
    rng = np.random.default_rng(1234)
    xdata = np.arange(1, 4.0)
    ydata = 2.5 * np.exp(-1.0 * xdata) + 0.2 * rng.standard_normal(size=3)
    rotn = np.array([[1 / np.sqrt(2), -1 / np.sqrt(2), 0], [1 / np.sqrt(2), 1 / np.sqrt(2), 0],
                     [0, 0, 1.0]])
    covarp = rotn @ np.diag(np.full(3, 0.04)) @ rotn.T
    for jac in (expo_jac, None):
        for absolute_sigma in (False, True):
            popt1, pcov1 = curve_fit(expo, xdata, ydata, sigma=covarp, jac=jac,
                                     absolute_sigma=absolute_sigma)
            popt2, pcov2 = scipy_curve_fit(lambda x, a, b: a * np.exp(-b * x), xdata, ydata,
                                           sigma=covarp, absolute_sigma=absolute_sigma)
            assert_allclose(popt1, popt2, rtol=1e-6)
            assert_allclose(pcov1, pcov2, rtol=1e-5)
    with pytest.raises(ValueError, match="full covariance"):
        curve_fit(expo, *data("dask", xdata, ydata), sigma=covarp)


@pytest.mark.parametrize("absolute_sigma", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_scipy_curvefit_scalar_sigma(kind, absolute_sigma):
    x, y = data(kind, X4, Y4)
    _, pcov1 = curve_fit(lambda x, a, b: a * x + b, x, y, sigma=2, absolute_sigma=absolute_sigma,
                         **tier(kind))
    _, pcov2 = curve_fit(lambda x, a, b: a * x + b, x, y, sigma=np.full_like(Y4, 2),
                         absolute_sigma=absolute_sigma, **tier(kind))
    assert np.all(pcov1 == pcov2)


@pytest.mark.parametrize("method", ["lm", "trf", "dogbox"])
def test_scipy_dtypes(method):
    x = np.arange(-3, 5)
    y = 1.5 * x + 3.0 + 0.5 * np.sin(x)
    for dtx in [np.float32, np.float64]:
        for dty in [np.float32, np.float64]:
            with warnings.catch_warnings():
                warnings.simplefilter("error", OptimizeWarning)
                p, cov = curve_fit(lambda x, a, b: a * x + b, x.astype(dtx), y.astype(dty),
                                   method=method)
            assert np.isfinite(cov).all()
            assert not np.allclose(p, 1)


def test_scipy_dtypes2():
    def hyperbola(x, s_1, s_2, o_x, o_y, c):
        b_2, b_1 = (s_1 + s_2) / 2, (s_2 - s_1) / 2
        return o_y + b_1 * (x - o_x) + b_2 * jnp.sqrt((x - o_x)**2 + c**2 / 4)

    bounds = (np.array([-3.0, 0.0, -2.0, -10.0, 0.0]), np.array([0.0, 3.0, 3.0, 0.0, 10.0]))
    guess = np.array([-2.5 / 3.0, 4 / 3.0, 1.0, -4.0, 0.5])
    params = [-2, 0.4, -1, -5, 9.5]
    xdata = np.array([-32, -16, -8, 4, 4, 8, 16, 32])
    popt_64, _ = curve_fit(f=hyperbola, xdata=xdata, ydata=np.asarray(hyperbola(xdata, *params)),
                           p0=guess, bounds=bounds)
    x32 = xdata.astype(np.float32)
    popt_32, _ = curve_fit(f=hyperbola, xdata=x32,
                           ydata=np.asarray(hyperbola(x32, *params), dtype=np.float32),
                           p0=guess, bounds=bounds)
    assert_allclose(popt_32, popt_64, atol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_broadcast_y(kind):
    """scipy's model subtracts a captured per-point ``target`` (not pointwise: refused
    here); the pointwise way passes it as a row of x. A scalar ydata is broadcast."""
    xdata = np.arange(10.0)
    target = 4.7 * xdata**2 + 3.5 * xdata + np.random.default_rng(123).random(10)
    with pytest.raises(NotPointwiseError):
        curve_fit(lambda x, a, b: a * x**2 + b * x - jnp.asarray(target), xdata, np.zeros(10))
    xt = data(kind, np.stack([xdata, target]))
    for method in ["lm", "trf", "dogbox"]:
        popt0, pcov0 = curve_fit(lambda x, a, b: a * x[0]**2 + b * x[0] - x[1], xdata=xt,
                                 ydata=data(kind, np.zeros(10)), method=method, **tier(kind))
        popt1, pcov1 = curve_fit(lambda x, a, b: a * x[0]**2 + b * x[0] - x[1], xdata=xt,
                                 ydata=0, method=method, **tier(kind))
        assert_allclose(pcov0, pcov1)
        assert_allclose(popt0, popt1)


def test_scipy_args_in_kwargs():
    with pytest.raises(ValueError):
        curve_fit(lambda x, a, b: a * x + b, xdata=[1, 2, 3, 4], ydata=[5, 9, 13, 17], p0=[1],
                  args=(1,))


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_data_point_number_validation(kind):
    x, y = data(kind, np.array([1, 2, 3, 4.0]), np.array([5, 9, 13, 17.0]))
    with pytest.raises(TypeError, match="The number of func parameters="):
        curve_fit(lambda x, a, b, c, d, e: a * jnp.exp(-b * x) + c + d + e, xdata=x, ydata=y,
                  **tier(kind))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_scipy_gh4555():
    def f(x, a, b, c, d, e):
        return a * jnp.log(x + 1 + b) + c * jnp.log(x + 1 + d) + e

    rng = np.random.default_rng(408113519974467917)
    x = np.arange(100.0)
    y = np.linspace(2, 7, 100) + rng.random(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        _, cov = curve_fit(f, x, y, maxfev=100000)
    finite = np.isfinite(np.diag(cov))
    assert np.all(np.diag(cov)[finite] > 0)
    block = cov[np.ix_(finite, finite)]
    assert np.all(np.linalg.eigvalsh(block) > -1e-2)
    assert_allclose(cov[np.ix_(finite, finite)], cov[np.ix_(finite, finite)].T)


@pytest.mark.parametrize("kind", KINDS)
def test_scipy_gh4555b(kind):
    rng = np.random.default_rng(408113519974467917)
    xdata = np.linspace(0, 4, 50)
    ydata = 2.5 * np.exp(-1.3 * xdata) + 0.5 + 0.2 * rng.normal(size=50)
    _, res = curve_fit(lambda x, a, b, c: a * jnp.exp(-b * x) + c, *data(kind, xdata, ydata),
                       **tier(kind))
    ref = [[+0.0158972536486215, 0.0069207183284242, -0.0007474400714749],
           [+0.0069207183284242, 0.0205057958128679, +0.0053997711275403],
           [-0.0007474400714749, 0.0053997711275403, +0.0027833930320877]]
    # scipy's reference is lm's stopping point at its default tolerances, 1.6e-6 from the
    # covariance at the optimum; this package stops nearer the optimum (scipy converged
    # tightly agrees with it to 1e-7)
    assert_allclose(res, ref, 2e-6)
    _, tight = scipy_curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, xdata, ydata,
                               xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert_allclose(res, tight, 2e-7)


def test_scipy_gh13670():
    """scipy checks its callables are not called twice at the same parameters. Here the
    model and jac are traced once and compiled, never called per evaluation, so the
    counterpart checks that a fit with a jac callable makes progress at every pass."""
    rng = np.random.default_rng(8250058582555444926)
    x = np.linspace(0, 3, 101)
    y = 2 * x + 1 + rng.normal(size=101) * 0.5
    r = nlsq_dask.fit(lambda x, a, b: x * a + b, x, y, [1.0, 5.0], method="lm",
                      jac=lambda x, a, b: jnp.stack([x, jnp.ones_like(x)], axis=-1))
    costs = [h["cost"] for h in r.history]
    assert all(b < a for a, b in zip(costs, costs[1:]))
    assert_allclose(r.popt, np.polyfit(x, y, 1), rtol=1e-10)


@pytest.mark.parametrize("method", ["trf", "dogbox"])
def test_scipy_gh20155_error_mentions_x0(method):
    with pytest.raises(ValueError, match="Initial guess is outside of provided bounds"):
        curve_fit(lambda x, a: x**a, X4, Y4, p0=[1], bounds=(1000, 1001), method=method)


# ---------------------------------------------------------------- beyond TestCurveFit
def test_not_converged_is_scipys_runtime_error():
    xdata = np.linspace(0, 1, 11)
    with pytest.raises(RuntimeError, match="Optimal parameters not found: The maximum number"):
        curve_fit(expo, xdata, 2 * np.exp(-2 * xdata), maxfev=2)


def test_p0_none_with_bounds_starts_where_scipy_starts():
    from nlsq_dask.arguments import default_p0

    lb, ub = np.array([0.0, 2.0, -np.inf, -np.inf]), np.array([1.0, np.inf, 5.0, np.inf])
    assert_array_equal(default_p0(lb, ub), [0.5, 3.0, 4.0, 1.0])
    xdata = np.linspace(0, 1, 11)
    popt, _ = curve_fit(expo, xdata, 2 * np.exp(-2 * xdata), bounds=([1.5, 2.5], [3.0, 4.0]))
    s_opt, _ = scipy_curve_fit(lambda x, a, b: a * np.exp(-b * x), xdata, 2 * np.exp(-2 * xdata),
                               bounds=([1.5, 2.5], [3.0, 4.0]))
    assert_allclose(popt, s_opt, rtol=1e-6)


def test_xarray_data():
    xr = pytest.importorskip("xarray")
    xdata = np.linspace(0, 1, 11)
    x = xr.DataArray(xdata, dims="t")
    y = xr.DataArray(2 * np.exp(-2 * xdata), dims="t").chunk({"t": 4})
    popt, _ = curve_fit(expo, x, y)
    assert_allclose(popt, [2.0, 2.0])
    # dask-backed xarray data are never computed up front to be checked: the NaN is
    # found in the first pass (the ledger's message, not numpy's asarray_chkfinite)
    y_nan = y.copy(data=y.data.copy())
    y_nan[5] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(1 point\(s\)"):
        curve_fit(expo, x, y_nan, tier="chunked")
    with pytest.raises(ValueError, match=r"NaN or inf \(1 point\(s\)"):     # as scipy:
        curve_fit(expo, x, y_nan, tier="chunked", check_finite=True, nan_policy="omit")
    popt, _ = curve_fit(expo, x, y_nan, tier="chunked", nan_policy="omit")
    assert_allclose(popt, [2.0, 2.0])


def test_fit_result_is_the_tuple_and_a_least_squares_result():
    xdata = np.linspace(0, 1, 11)
    ydata = 2 * np.exp(-2 * xdata) + 0.01 * np.sin(9 * xdata)
    r = nlsq_dask.fit(expo, xdata, ydata, bounds=([0, 0], [1.5, np.inf]))
    popt, pcov = r
    assert len(r) == 2 and r[0] is r.popt and r[1] is r.pcov and r[-1] is r.pcov
    assert [a is b for a, b in zip(r, (popt, pcov))] == [True, True]
    from scipy.optimize import least_squares

    s = least_squares(lambda p: p[0] * np.exp(-p[1] * xdata) - ydata, [1.0, 1.0],
                      bounds=([0, 0], [1.5, np.inf]), xtol=1e-12, ftol=1e-12, gtol=1e-12)
    assert_allclose(r.x, s.x, rtol=1e-6)
    assert_allclose(r.cost, s.cost, rtol=1e-10)
    assert_allclose(r.fun, s.fun, rtol=1e-6, atol=1e-9)
    assert_allclose(r.jac, s.jac, rtol=1e-5, atol=1e-9)
    assert_array_equal(r.active_mask, s.active_mask)
    assert r.status > 0 and r.success and r.message and r.nfev > 0
    assert abs(r.grad[1]) < 1e-6 and r.grad[0] < 0        # pushing against a's upper bound
    assert r.optimality < 1e-6


# ----------------------------------------------- least_squares' bounds, loss and x_scale tests
def trivial(x, p):
    """``least_squares``' ``fun_trivial`` (residual ``p² + 5``) as a curve: one point."""
    return p**2 + 5 + 0 * x


X1, Y1 = np.zeros(1), np.zeros(1)


@pytest.mark.parametrize("bounds, x0, expect, mask", [
    ((-1.0, 3.0), 2.0, 0.0, 0), ((0.5, 3.0), 2.0, 0.5, -1)])
def test_least_squares_in_bounds(bounds, x0, expect, mask):
    for jac in ["2-point", "3-point", "cs", lambda x, p: (2 * p + 0 * x)[:, None]]:
        r = nlsq_dask.fit(trivial, X1, Y1, [x0], bounds=bounds, jac=jac)
        assert_allclose(r.x, expect, atol=1e-4)
        assert_array_equal(r.active_mask, [mask])


@pytest.mark.parametrize("bounds", [(10.0, 0.0), (3.0, 4), (1.0, 2, 3), (1.0, [2.0, 3.0])])
def test_least_squares_bad_bounds(bounds):
    with pytest.raises(ValueError):
        nlsq_dask.fit(trivial, X1, Y1, [2.0], bounds=bounds)


def test_least_squares_bounds_instances():
    def two(x, a, b):
        return jnp.where(x == 0, a, b)        # residuals (a, b): least_squares' fun_2d_trivial

    x2, y2 = np.array([0.0, 1.0]), np.zeros(2)
    for bounds, x0, expect in [(Bounds(), [0.5], 0.0), (Bounds(lb=1.0), [3.0], 1.0),
                               (Bounds(lb=-1.0, ub=1.0), [0.5], 0.0), (Bounds(ub=-1.0), [-3.0], -1.0)]:
        assert_allclose(nlsq_dask.fit(trivial, X1, Y1, x0, bounds=bounds).x, expect, atol=1e-4)
    for bounds, expect in [(Bounds(lb=[-1.0, -1.0], ub=1.0), [0, 0]),
                           (Bounds(lb=[0.1, 0.1]), [0.1, 0.1]), ((0.5, [2.0, 2.0]), [0.5, 0.5]),
                           (([0.3, 0.2], 3.0), [0.3, 0.2]), (([-1, 0.5], [1.0, 3.0]), [0.0, 0.5])]:
        assert_allclose(nlsq_dask.fit(two, x2, y2, [0.5, 0.5] if isinstance(bounds, Bounds)
                                      else [1.0, 1.0], bounds=bounds).x, expect, atol=1e-5)


@pytest.mark.parametrize("x0, bounds", [
    ([-2.0, 1.0], ([-np.inf, -1.5], np.inf)), ([2.0, 2.0], ([-np.inf, 1.5], np.inf)),
    ([-2.0, 2.0], ([-np.inf, 1.5], np.inf)), ([0.0, 2.0], ([-np.inf, 1.5], [1.0, np.inf])),
    ([2.0, 2.0], ([1.0, 1.5], [3.0, 3.0])), ([-1.2, 1.0], ([-50.0, 0.0], [0.5, 100]))])
def test_least_squares_rosenbrock_bounds(x0, bounds):
    def rosenbrock(x, a, b):        # residuals 10 (b - a²) and 1 - a at the points 0 and 1
        return jnp.where(x == 0, 10 * (b - a**2), 1 - a)

    x2, y2 = np.array([0.0, 1.0]), np.zeros(2)
    for x_scale in (1.0, [1.0, 0.5], "jac"):
        for tr_solver in ("exact", "lsmr"):
            r = nlsq_dask.fit(rosenbrock, x2, y2, x0, bounds=bounds, x_scale=x_scale,
                              tr_solver=tr_solver)
            assert_allclose(r.optimality, 0.0, atol=1e-5)


def cubic_soft_l1(z):
    t = 1 + z
    return jnp.stack([3 * (t**(1 / 3) - 1), t**(-2 / 3), -2 / 3 * t**(-5 / 3)])


LOSSES = ["linear", "soft_l1", "huber", "cauchy", "arctan", cubic_soft_l1]


def test_least_squares_loss_options_and_fun():
    for loss in LOSSES:
        r = nlsq_dask.fit(trivial, X1, Y1, [2.0], loss=loss)
        assert_allclose(r.x, 0, atol=1e-7)       # scipy: 1e-15; the flat optimum of p² + 5
        assert_allclose(r.fun, [r.x[0]**2 + 5], rtol=1e-15)      # fun is the raw residual
    with pytest.raises(ValueError):
        nlsq_dask.fit(trivial, X1, Y1, [2.0], loss="hinge")


EPS = np.finfo(float).eps


@pytest.mark.parametrize("loss, f_scale, grad, jac", [
    ("linear", 1.0, 2 * 2 * 9, 2 * 2),
    ("huber", 1.0, 2 * 2, 2 * 2 * EPS**0.5),
    ("huber", 10.0, None, 2 * 2),
    ("soft_l1", 1.0, 2 * 2 * 9 / (1 + 81)**0.5, 2 * 2 * (1 + 81)**-0.75),
    ("cauchy", 1.0, 2 * 2 * 9 / (1 + 81), 2 * 2 * EPS**0.5),
    ("cauchy", 10.0, None, 2 * 2 * (1 - 0.81) ** 0.5 / (1 + 0.81)),
    ("arctan", 1.0, 2 * 2 * 9 / (1 + 9**4), 2 * 2 * EPS**0.5),
    ("arctan", 20.0, None, 2 * 2 * (1 - 3 * 0.45**4) ** 0.5 / (1 + 0.45**4)),
    (cubic_soft_l1, 1.0, 2 * 2 * 9 / (1 + 81)**(2 / 3), 2 * 2 * EPS**0.5),
    (cubic_soft_l1, 6.0, None, 2 * 2 * (1 - 1.5**2 / 3) ** 0.5 * (1 + 1.5**2) ** (-5 / 6)),
])
def test_least_squares_grad_and_jac(loss, f_scale, grad, jac):
    """At ``x = 2`` after one evaluation (``max_nfev=1``): scipy's closed forms."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = nlsq_dask.fit(trivial, X1, Y1, [2.0], loss=loss, f_scale=f_scale, max_nfev=1,
                          jac=lambda x, p: (2 * p + 0 * x)[:, None])
    assert_array_equal(r.x, [2.0])
    if grad is not None:
        assert_allclose(r.grad, [grad], rtol=1e-14)
    assert_allclose(r.jac, [[jac]], rtol=1e-12)


def test_least_squares_robustness():
    """``ExponentialFittingProblem``: robust losses land nearer the truth than linear."""
    rng = np.random.default_rng(12220903)
    for noise in (0.1, 1.0):
        x = np.linspace(-1, 1, 11)
        y = 1 + np.exp(0.1 * x) + noise * rng.standard_normal(11)
        y[rng.integers(0, 11, 1)] += 50 * noise * rng.random(1)

        def model(x, a, b):
            return a + jnp.exp(b * x)

        lsq = nlsq_dask.fit(model, x, y, [0.0, 0.0])
        assert_allclose(lsq.optimality, 0, atol=1e-2)
        for loss in LOSSES[1:]:
            robust = nlsq_dask.fit(model, x, y, [0.0, 0.0], loss=loss, f_scale=noise)
            assert_allclose(robust.optimality, 0, atol=1e-2)
            assert np.linalg.norm(robust.x - [1, 0.1]) < np.linalg.norm(lsq.x - [1, 0.1])


def test_tolerances_zero_switch_a_test_off_and_all_zero_is_an_error():
    xdata = np.linspace(0, 1, 11)
    ydata = 2 * np.exp(-2 * xdata)
    with pytest.warns(UserWarning, match="Setting `ftol` below the machine epsilon"):
        r = nlsq_dask.fit(expo, xdata, ydata, ftol=0.0)
    assert r.success and r.status != 2          # ftol cannot be what stopped it
    assert_allclose(r.popt, [2, 2])
    popt, _ = curve_fit(expo, xdata, ydata, ftol=None, xtol=None, gtol=1e-10)   # scipy: None is off
    assert_allclose(popt, [2, 2])
    with pytest.raises(ValueError, match="At least one of the tolerances must be higher"):
        nlsq_dask.fit(expo, xdata, ydata, ftol=0, xtol=0, gtol=0)
    with pytest.raises(ValueError, match="All tolerances must be higher than machine epsilon"):
        nlsq_dask.fit(expo, xdata, ydata, ftol=0, method="lm")


def test_bad_scipy_arguments_name_themselves():
    xdata = np.linspace(0, 1, 11)
    ydata = 2 * np.exp(-2 * xdata)
    for kw, match in [({"jac": "4-point"}, "jac must be"), ({"tr_solver": "cg"}, "tr_solver"),
                      ({"maxfev": 5, "max_nfev": 7}, "max_nfev or maxfev"),
                      ({"check_finite": "yes"}, "check_finite")]:
        with pytest.raises((ValueError, TypeError), match=match):
            nlsq_dask.fit(expo, xdata, ydata, **kw)


def test_check_finite_on_dask_data_raises_in_the_first_pass():
    xdata = np.linspace(0, 1, 12)
    ydata = 2 * np.exp(-2 * xdata)
    ydata[7] = np.nan
    x, y = data("dask", xdata, ydata, chunks=4)
    with pytest.raises(ValueError, match=r"NaN or inf \(1 point\(s\).*partition 1"):
        nlsq_dask.fit(expo, x, y, check_finite=True, tier="chunked")
    r = nlsq_dask.fit(expo, x, y, tier="chunked")          # default: left out, counted
    assert r.n_points_used == 11
    assert_allclose(r.popt, [2, 2])


def test_n_dimensional_xdata_reaches_the_model_in_its_shape():
    t = np.linspace(0, 1, 20)
    x = np.stack([t, 2 * t]).reshape(1, 2, 20)
    seen = []

    def model(x, a, b):
        seen.append(x.shape[:-1])
        return a * x[0, 0] + b * x[0, 1]

    popt, _ = curve_fit(model, x, 3 * t + 4 * t)
    assert seen and all(s == (1, 2) for s in seen)
    assert_allclose(popt[0] + 2 * popt[1], 7.0, rtol=1e-10)


def test_status_is_scipys_enum():
    from nlsq_dask.solver import STATUS_MESSAGES, Status

    assert [int(s) for s in Status] == [-2, -1, 0, 1, 2, 3, 4]     # scipy >= 1.16 has -2
    assert STATUS_MESSAGES == {int(s): s.message for s in Status}
    xdata = np.linspace(0, 1, 11)
    r = nlsq_dask.fit(expo, xdata, 2 * np.exp(-2 * xdata))
    assert isinstance(r.status, Status) and r.status > 0 and r.message == r.status.message
    with pytest.warns(nlsq_dask.FitWarning):
        r = nlsq_dask.fit(expo, xdata, 2 * np.exp(-2 * xdata), max_nfev=2)
    assert r.status is Status.MAX_NFEV and not r.success
