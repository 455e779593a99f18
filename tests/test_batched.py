"""The batched (per-pixel) trust-region solver: agreement with scipy and nlsq_dask.fit,
evaluation counts, status, masks, bounds, and xarray's curvefit tests."""

import numpy as np
import pytest
import xarray as xr
from scipy.optimize import curve_fit, least_squares

import nlsq_dask
import nlsq_dask.accessor  # noqa: F401  (registers .nlsq)
from nlsq_dask.solver import batched as bt
from nlsq_dask.solver.covariance import batched_covariance

import jax.numpy as jnp

TIGHT = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)


def expo(t, a, b, c):
    return a * jnp.exp(-b * t) + c


def np_expo(t, a, b, c):
    return a * np.exp(-b * t) + c


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(3)
    n, B = 40, 300
    t = np.linspace(0.0, 4.0, n)
    a, b, c = rng.uniform(1, 3, B), rng.uniform(0.5, 2, B), rng.uniform(-0.5, 0.5, B)
    y = a[:, None] * np.exp(-np.outer(b, t)) + c[:, None] + 0.02 * rng.standard_normal((B, n))
    p0 = np.tile(np.array([[1.0], [1.0], [0.0]]), (1, B))
    lb, ub = np.full((3, B), -np.inf), np.full((3, B), np.inf)
    return t, y, p0, lb, ub


def test_matches_curve_fit_and_fit(pixels):
    t, y, p0, lb, ub = pixels
    out = bt.batched_fit(expo, 3, (t,), y, np.ones_like(y), p0, lb, ub, **TIGHT)
    assert np.all(out.status > 0)
    for i in (0, 17, 150, 299):
        popt, pcov = curve_fit(np_expo, t, y[i], p0=[1, 1, 0], **TIGHT)
        np.testing.assert_allclose(out.popt[:, i], popt, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(out.pcov[:, :, i], pcov, rtol=1e-5, atol=1e-12)
    for i in (0, 150):                            # per pixel == nlsq_dask.fit on that pixel
        res = nlsq_dask.fit(expo, t, y[i], p0=[1, 1, 0], **TIGHT)
        np.testing.assert_allclose(out.popt[:, i], res.popt, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(out.cost[i], res.cost, rtol=1e-8)


def test_tiles_and_rounds_do_not_change_results(pixels):
    t, y, p0, lb, ub = pixels
    w = np.ones_like(y)
    a = bt.batched_fit(expo, 3, (t,), y, w, p0, lb, ub, tile=32)
    b = bt.batched_fit(expo, 3, (t,), y, w, p0, lb, ub, tile=1000)
    np.testing.assert_array_equal(a.nfev, b.nfev)
    np.testing.assert_allclose(a.popt, b.popt, rtol=1e-12)


def test_masked_points_equal_dropped_points(pixels):
    t, y, p0, lb, ub = pixels
    y = y[:4].copy()
    y[1, 5:9] = np.nan
    w = np.ones_like(y)
    w[2, ::3] = 0.0
    out = bt.batched_fit(expo, 3, (t,), y, w, p0[:, :4], lb[:, :4], ub[:, :4], **TIGHT)
    np.testing.assert_array_equal(out.n, [40, 36, 26, 40])
    keep = np.arange(40) % 3 != 0
    ref, _ = curve_fit(np_expo, t[keep], y[2, keep], p0=[1, 1, 0], **TIGHT)
    np.testing.assert_allclose(out.popt[:, 2], ref, rtol=1e-6)
    ok = np.isfinite(y[1])
    ref, _ = curve_fit(np_expo, t[ok], y[1, ok], p0=[1, 1, 0], **TIGHT)
    np.testing.assert_allclose(out.popt[:, 1], ref, rtol=1e-6)


def test_status_codes_and_empty_pixels(pixels):
    t, y, p0, lb, ub = pixels
    y = y[:3].copy()
    y[0] = np.nan                              # no usable point
    out = bt.batched_fit(expo, 3, (t,), y, np.ones_like(y), p0[:, :3], lb[:, :3], ub[:, :3],
                         max_nfev=3)
    assert out.status[0] == -1 and np.all(np.isnan(out.popt[:, 0]))
    assert np.all(out.status[1:] == 0) and np.all(out.nfev[1:] == 3)


def test_bounds_active_and_interior(pixels):
    t, y, p0, lb, ub = pixels
    y = y[:2]
    lb = np.array([[-np.inf] * 2, [-np.inf] * 2, [-np.inf, 0.6]])  # c <= ... on pixel 1
    ub = np.array([[np.inf] * 2, [np.inf] * 2, [np.inf, 0.7]])
    p0 = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.65]])
    out = bt.batched_fit(expo, 3, (t,), y, np.ones_like(y), p0, lb, ub, **TIGHT)
    for i in range(2):
        ref, _ = curve_fit(np_expo, t, y[i], p0=p0[:, i], bounds=(lb[:, i], ub[:, i]), **TIGHT)
        np.testing.assert_allclose(out.popt[:, i], ref, rtol=1e-5, atol=1e-7)
    assert out.popt[2, 1] == pytest.approx(0.6)


def test_per_pixel_x_and_two_inputs():
    rng = np.random.default_rng(0)
    B, n = 20, 30
    x0 = rng.uniform(-1, 1, (B, n))
    x1 = rng.uniform(-1, 1, (B, n))

    def plane(x, a, b, c):
        return a * x[0] + b * x[1] + c

    y = 2.0 * x0 - 1.0 * x1 + 0.5 + 0.01 * rng.standard_normal((B, n))
    out = bt.batched_fit(plane, 3, (x0, x1), y, np.ones_like(y), np.zeros((3, B)),
                         np.full((3, B), -np.inf), np.full((3, B), np.inf), x_form="stacked")
    for i in (0, 7):
        A = np.stack([x0[i], x1[i], np.ones(n)], axis=1)
        ref = np.linalg.lstsq(A, y[i], rcond=None)[0]
        np.testing.assert_allclose(out.popt[:, i], ref, rtol=1e-8, atol=1e-10)


def test_non_broadcasting_model_falls_back_to_vmap(pixels):
    t, y, p0, lb, ub = pixels

    def poly(x, a, b, c):                         # stacks the parameters: not pointwise in B
        return jnp.polyval(jnp.stack([a, b, c]), x)

    yq = 0.5 * t ** 2 - t + 2.0 + 0.0 * y[:5]
    out = bt.batched_fit(poly, 3, (t,), yq, np.ones_like(yq), p0[:, :5], lb[:, :5], ub[:, :5])
    np.testing.assert_allclose(out.popt, np.tile([[0.5], [-1.0], [2.0]], (1, 5)), atol=1e-8)


def test_robust_loss_matches_scipy(pixels):
    t, y, p0, lb, ub = pixels
    y = y[:2].copy()
    y[:, 3] += 5.0
    out = bt.batched_fit(expo, 3, (t,), y, np.ones_like(y), p0[:, :2], lb[:, :2], ub[:, :2],
                         loss="soft_l1", f_scale=0.1, **TIGHT)
    for i in range(2):
        ref = least_squares(lambda q: np_expo(t, *q) - y[i], [1.0, 1.0, 0.0], loss="soft_l1",
                            f_scale=0.1, **TIGHT)
        np.testing.assert_allclose(out.popt[:, i], ref.x, rtol=1e-6)


@pytest.mark.parametrize("p", [2, 3, 5, 8])
def test_covariance_is_curve_fits_pseudo_inverse(p):
    """Jacobi eigen-decomposition per pixel == curve_fit's SVD pseudo-inverse of J; a
    parameter with a zero Jacobian column (undetermined) gets inf rows and columns."""
    rng = np.random.default_rng(p)
    B, n = 64, 40
    J = rng.standard_normal((B, n, p)) * np.logspace(-3, 3, p)      # badly scaled columns
    J[1::2, :, -1] = 0.0                                              # rank-deficient pixels
    H = np.einsum("bni,bnj->ijb", J, J)
    cost = rng.uniform(0.5, 2.0, B)
    pcov = batched_covariance(H, np.full(B, float(n)), cost, False, chunk=64)
    for b in range(B):
        _, s, vt = np.linalg.svd(J[b], full_matrices=False)          # curve_fit's recipe
        keep = s > np.finfo(float).eps * max(J[b].shape) * s[0]
        ref = (vt[keep].T / s[keep] ** 2) @ vt[keep] * 2.0 * cost[b] / (n - p)
        got = pcov[:, :, b]
        if b % 2:  # the last parameter is undetermined: inf, the rest as curve_fit
            assert np.all(np.isinf(got[-1, :])) and np.all(np.isinf(got[:, -1]))
            got, ref = got[:-1, :-1], ref[:-1, :-1]
        scale = np.sqrt(np.abs(np.outer(np.diag(ref), np.diag(ref)))) + 1e-300
        np.testing.assert_allclose(got / scale, ref / scale, atol=1e-9)


def test_no_weights_equals_unit_weights(pixels):
    t, y, p0, lb, ub = pixels
    a = bt.batched_fit(expo, 3, (t,), y, None, p0, lb, ub, **TIGHT)
    b = bt.batched_fit(expo, 3, (t,), y, np.ones_like(y), p0, lb, ub, **TIGHT)
    np.testing.assert_allclose(a.popt, b.popt, rtol=1e-12)
    np.testing.assert_allclose(a.pcov, b.pcov, rtol=1e-10)
    np.testing.assert_array_equal(a.n, np.full(y.shape[0], y.shape[1]))


def np_expo_jac(t, a, b, c):
    e = np.exp(-b * t)
    return np.stack([e, -a * t * e, np.ones_like(t)], axis=1)


def _scipy_trf(t, y, p0, lb, ub, **kw):
    """least_squares with the exact Jacobian and the scaling the solver uses."""
    return least_squares(lambda q: np_expo(t, *q) - y, p0, jac=lambda q: np_expo_jac(t, *q),
                         bounds=(lb, ub), method="trf", x_scale="jac", **kw)


def test_bounded_optima_are_curve_fits(pixels):
    """Per-pixel fits are scipy's ``trf``: bounds that hold most pixels on one or two
    bounds (c ≥ 0 on pixels whose c is negative, a ≤ 2.5, b ≤ 1.5); some start on a
    bound."""
    t, y = pixels[0], pixels[1][:60]
    B = y.shape[0]
    lb, ub = np.tile([[0.0], [0.0], [0.0]], (1, B)), np.tile([[2.5], [1.5], [0.3]], (1, B))
    p0 = np.tile([[1.0], [1.0], [0.1]], (1, B))
    p0[2, ::7] = 0.0                                           # on the lower bound of c
    out = bt.batched_fit(expo, 3, (t,), y, None, p0, lb, ub, **TIGHT)
    assert np.all(out.status > 0)
    on_bound = 0
    for i in range(B):
        ref, _ = curve_fit(np_expo, t, y[i], p0=p0[:, i], bounds=(lb[:, i], ub[:, i]),
                           method="trf", jac=lambda x, *q: np_expo_jac(x, *q), **TIGHT)
        np.testing.assert_allclose(out.popt[:, i], ref, rtol=1e-6, atol=1e-9)
        on_bound += np.any(np.isclose(ref, lb[:, i]) | np.isclose(ref, ub[:, i]))
    assert on_bound > B // 2


@pytest.mark.parametrize("bounded", [False, True])
def test_evaluations_and_status_are_scipys(pixels, bounded):
    """nfev counts function evaluations as least_squares does (the start is one, each
    trial one), so with the same scaling the counts and the statuses are scipy's."""
    t, y = pixels[0], pixels[1][:60]
    B = y.shape[0]
    if bounded:
        lb, ub = np.tile([[0.0], [0.0], [0.0]], (1, B)), np.tile([[2.5], [1.5], [0.3]], (1, B))
        p0 = np.tile([[1.0], [1.0], [0.1]], (1, B))
    else:
        lb, ub = np.full((3, B), -np.inf), np.full((3, B), np.inf)
        p0 = np.tile([[1.0], [1.0], [0.0]], (1, B))
    out = bt.batched_fit(expo, 3, (t,), y, None, p0, lb, ub)
    refs = [_scipy_trf(t, y[i], p0[:, i], lb[:, i], ub[:, i]) for i in range(B)]
    nfev = np.array([r.nfev for r in refs])
    status = np.array([r.status for r in refs])
    # rounding may tip a termination test on a pixel or two
    assert np.mean(out.nfev == nfev) >= 0.95
    assert np.mean(out.status == status) >= 0.95
    for i in range(B):
        np.testing.assert_allclose(out.popt[:, i], refs[i].x, rtol=1e-6, atol=1e-9)


def test_max_nfev_is_scipys(pixels):
    t, y = pixels[0], pixels[1][:4]
    lb, ub = np.full((3, 4), -np.inf), np.full((3, 4), np.inf)
    p0 = np.tile([[1.0], [1.0], [0.0]], (1, 4))
    for max_nfev in (1, 2, 4):
        out = bt.batched_fit(expo, 3, (t,), y, None, p0, lb, ub, max_nfev=max_nfev)
        for i in range(4):
            ref = _scipy_trf(t, y[i], p0[:, i], lb[:, i], ub[:, i], max_nfev=max_nfev)
            assert (out.nfev[i], out.status[i]) == (ref.nfev, ref.status)
            np.testing.assert_allclose(out.popt[:, i], ref.x, rtol=1e-9)


def test_rank_deficient_pixels_are_scipys(pixels):
    """A parameter the model ignores makes JᵀJ singular: those pixels take scipy's
    rank-deficient path (no Gauss–Newton step), with scipy's iterates."""
    t, y = pixels[0], pixels[1][:20]
    B = y.shape[0]

    def ignores_c(x, a, b, c):
        return a * jnp.exp(-b * x) + 0.0 * c

    p0 = np.tile([[1.0], [1.0], [0.3]], (1, B))
    inf = np.full((3, B), np.inf)
    out = bt.batched_fit(ignores_c, 3, (t,), y, None, p0, -inf, inf)
    refs = [least_squares(lambda q: np_expo(t, q[0], q[1], 0.0) - y[i], p0[:, i],
                          jac=lambda q: np_expo_jac(t, q[0], q[1], 0.0) * [1, 1, 0],
                          method="trf", x_scale="jac") for i in range(B)]
    assert np.mean(out.nfev == [r.nfev for r in refs]) >= 0.9
    assert np.mean(out.status == [r.status for r in refs]) >= 0.9
    for i in range(B):
        np.testing.assert_allclose(out.popt[:, i], refs[i].x, rtol=1e-6)


def line(x, a, b):
    """xarray's ``test_curvefit_ignore_errors`` model: it breaks down for ``a > 10``."""
    return jnp.where(a > 10, 0.0, a * x + b)


def np_line(x, a, b):
    return 0.0 * x if a > 10 else a * x + b


def np_line_jac(q):
    return np.stack([LINE_X, np.ones_like(LINE_X)], axis=1) * (q[0] <= 10)


LINE_X = np.array([0.0, 1.0, 2.0])
LINE_Y = np.array([[1.0, 3.0, 5.0], [0.0, 20.0, 40.0]])


def test_line_with_five_evaluations():
    """An exact straight line takes two evaluations (scipy's count); the broken pixel
    stops at five with status 0, where least_squares stops."""
    inf = np.full((2, 2), np.inf)
    out = bt.batched_fit(line, 2, (LINE_X,), LINE_Y, None, np.ones((2, 2)), -inf, inf,
                         max_nfev=5)
    np.testing.assert_allclose(out.popt[:, 0], [2.0, 1.0], rtol=1e-12)
    ref, _ = curve_fit(np_line, LINE_X, LINE_Y[0], p0=[1.0, 1.0], maxfev=5)
    np.testing.assert_allclose(out.popt[:, 0], ref, rtol=1e-6)
    assert out.status[0] > 0 and out.status[1] == 0
    for i in range(2):
        r = least_squares(lambda q: np_line(LINE_X, *q) - LINE_Y[i], [1.0, 1.0], jac=np_line_jac,
                          method="trf", x_scale="jac", max_nfev=5)
        assert (out.nfev[i], out.status[i]) == (r.nfev, r.status)
        np.testing.assert_allclose(out.popt[:, i], r.x, rtol=1e-9)
    with pytest.raises(RuntimeError, match="Number of calls to function has reached maxfev"):
        curve_fit(np_line, LINE_X, LINE_Y[1], p0=[1.0, 1.0], maxfev=5)


@pytest.mark.parametrize("chunked", [False, True])
def test_curvefit_ignore_errors(chunked):
    """xarray's ``test_curvefit_ignore_errors``, through the accessor."""
    da = xr.DataArray(LINE_Y, coords={"i": [1, 2], "x": LINE_X}, dims=("i", "x"))
    if chunked:
        da = da.chunk({"i": 1})
    with pytest.raises(RuntimeError, match="maximum number of function evaluations"):
        da.nlsq.fit(coords="x", func=line, kwargs=dict(maxfev=5)).compute()
    fit = da.nlsq.fit(coords="x", func=line, errors="ignore", kwargs=dict(maxfev=5)).compute()
    expected = xr.DataArray([[2.0, 1.0], [np.nan, np.nan]],
                            coords={"i": [1, 2], "param": ["a", "b"]}, dims=("i", "param"))
    xr.testing.assert_allclose(fit.curvefit_coefficients, expected)
