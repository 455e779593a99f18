"""The trust-region helpers and the reduction tree, one by one (issue 16), with the
cases and numbers of scipy's ``scipy/optimize/tests/test_lsq_common.py`` for the helpers
scipy has, and closed forms for the others. The helpers are branch-free JAX (they run
inside the jitted step), so scipy's two ``ValueError`` cases of ``intersect_trust_region``
(a point outside the region, a zero step) are not theirs to raise: the step never calls
them that way."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

jnp = pytest.importorskip("jax.numpy")

from nlsq_dask.engines.reduce import combine_task, reduce_parts, reduction_tree  # noqa: E402
from nlsq_dask.solver.stats import NormalStats, QRStats  # noqa: E402
from nlsq_dask.solver.trust_region import (active_constraints, cl_scaling,  # noqa: E402
                                           intersect_trust_region, make_strictly_feasible,
                                           minimize_quadratic_1d, quad, quadratic_1d,
                                           step_size_to_bound, strictly_feasible_start)


def as_np(*values):
    return [np.asarray(v) for v in values]


def test_step_size_to_bound():
    lb, ub = np.array([-1.0, 2.5, 10.0]), np.array([1.0, 5.0, 100.0])
    x = np.array([0.0, 2.5, 12.0])
    for s, step, hits in [([0.1, 0.0, 0.0], 10, [1, 0, 0]), ([0.01, 0.05, -1.0], 2, [0, 0, -1]),
                          ([10.0, -0.0001, 100.0], 0, [0, -1, 0]), ([1.0, 0.5, -2.0], 1, [1, 0, -1]),
                          ([0.0, 0.0, 0.0], np.inf, [0, 0, 0])]:
        t, h = as_np(*step_size_to_bound(x, np.array(s), lb, ub))
        assert_array_equal(t, step)
        assert_array_equal(h, hits)


def test_active_constraints():
    lb, ub = np.array([0.0, -10.0, 1.0]), np.array([1.0, 0.0, 100.0])
    assert_array_equal(active_constraints([0.5, -5.0, 2.0], lb, ub), [0, 0, 0])
    assert_array_equal(active_constraints([0.0, 0.0, 10.0], lb, ub), [-1, 1, 0])
    assert_array_equal(active_constraints([0.0, 0.0, 10.0], lb, ub, rtol=0), [-1, 1, 0])
    x = np.array([1e-9, -1e-8, 100 - 1e-9])
    assert_array_equal(active_constraints(x, lb, ub), [0, 0, 1])
    assert_array_equal(active_constraints(x, lb, ub, rtol=1.5e-9), [-1, 0, 1])
    lb, ub = np.array([1.0, -np.inf, -np.inf]), np.array([np.inf, 10.0, np.inf])
    assert_array_equal(active_constraints(np.ones(3), lb, ub), [-1, 0, 0])
    assert_array_equal(active_constraints([0.0, 11.0, 0.0], lb, ub), [-1, 1, 0])
    assert_array_equal(active_constraints([0.0, 11.0, 0.0], lb, ub, rtol=0), [-1, 1, 0])


def test_strictly_feasible():
    lb, ub = np.array([-0.5, -0.8, 2.0]), np.array([0.8, 1.0, 3.0])
    x = np.array([-0.5, 0.0, 2 + 1e-10])
    x_new = np.asarray(make_strictly_feasible(x, lb, ub))          # scipy's rstep=0
    assert x_new[0] > -0.5 and np.array_equal(x_new[1:], x[1:])
    assert_allclose(strictly_feasible_start(x, lb, ub, rstep=1e-4), [-0.5 + 1e-4, 0.0, 2 * (1 + 1e-4)],
                    rtol=1e-15)
    x = np.array([-0.5, -1, 3.1])
    for new in (strictly_feasible_start(x, lb, ub), make_strictly_feasible(x, lb, ub)):
        assert np.all((np.asarray(new) >= lb) & (np.asarray(new) <= ub))
    assert_array_equal(strictly_feasible_start(np.array([0, 100.0]), np.array([-1, 100.0]),
                                               np.array([1, 100.0 + 1e-10]), rstep=1e-8),
                       [0, 100.0 + 0.5e-10])


def test_cl_scaling():
    lb = np.array([-np.inf, -5.0, 1.0, -np.inf])
    ub = np.array([1.0, np.inf, 10.0, np.inf])
    v, dv = as_np(*cl_scaling(np.array([0.5, 2.0, 5.0, 0.0]), np.array([1.0, 0.1, -10.0, 0.0]),
                              lb, ub))
    assert_array_equal(v, [1.0, 7.0, 5.0, 1.0])
    assert_array_equal(dv, [0.0, 1.0, -1.0, 0.0])


J = np.array([[0.1, 0.2], [-1.0, 1.0], [0.5, 0.2]])
G = np.array([0.8, -2.0])
DIAG = np.array([1.0, 2.0])


def test_quadratic_1d():
    """scipy's ``build_quadratic_1d`` numbers; here the quadratic takes ``JᵀJ``."""
    H = J.T @ J
    a, b, _ = quadratic_1d(H, G, np.zeros(2), np.zeros(2))
    assert float(a) == 0 and float(b) == 0
    a, b, _ = quadratic_1d(H, G, np.array([1.0, -1.0]), np.zeros(2))
    assert_allclose([a, b], [2.05, 2.8], rtol=1e-15)
    a, b, _ = quadratic_1d(H, G, np.array([1.0, -1.0]), DIAG)
    assert_allclose([a, b], [3.55, 2.8], rtol=1e-15)
    a, b, c = quadratic_1d(H, G, np.array([1.0, -1.0]), DIAG, s0=np.array([0.5, 0.5]))
    assert_allclose([a, b, c], [3.55, 2.39, -0.1525], rtol=1e-14)


def test_quad():
    """scipy's ``evaluate_quadratic`` numbers."""
    H = J.T @ J
    s = np.array([1.0, -1.0])
    assert_allclose(quad(H, G, s), 4.85, rtol=1e-15)
    assert_allclose(quad(H, G, s, diag=DIAG), 6.35, rtol=1e-15)
    for s, plain, with_diag in [([1.0, 1.0], -0.91, 0.59), ([0.0, 0.0], 0.0, 0.0)]:
        assert_allclose(quad(H, G, np.array(s)), plain, rtol=1e-14, atol=1e-15)
        assert_allclose(quad(H, G, np.array(s), diag=DIAG), with_diag, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("a, b, lb, ub, c, t_expect", [
    (5, -1, 1, 2, 0, 1), (5, -1, -2, -1, 0, -1), (5, -1, -1, 1, 0, 0.1), (5, -1, -1, 1, 10, 0.1),
    (5, -1, -np.inf, np.inf, 10, 0.1), (5, -1, 0, np.inf, 10, 0.1), (5, -1, -np.inf, 0, 10, 0)])
def test_minimize_quadratic_1d(a, b, lb, ub, c, t_expect):
    t, y = as_np(*minimize_quadratic_1d(a, b, lb, ub, c=c))
    assert_allclose(t, t_expect, rtol=1e-15)
    assert_allclose(y, a * t**2 + b * t + c, rtol=1e-15)


@pytest.mark.parametrize("lb, ub, t_expect", [(-np.inf, np.inf, None), (0, np.inf, np.inf),
                                              (-np.inf, 0, -np.inf)])
def test_minimize_quadratic_1d_unbounded_below(lb, ub, t_expect):
    t, y = as_np(*minimize_quadratic_1d(-1, 0.2, lb, ub))
    assert y == -np.inf
    if t_expect is not None:
        assert t == t_expect


def test_intersect_trust_region():
    t_neg, t_pos = as_np(*intersect_trust_region(np.zeros(3), np.array([1.0, 0.0, 0.0]), 1.0))
    assert (t_neg, t_pos) == (-1, 1)
    t_neg, t_pos = as_np(*intersect_trust_region(np.zeros(3), np.array([-1.0, 1.0, -1.0]), 1.0))
    assert_allclose([t_neg, t_pos], [-3**-0.5, 3**-0.5], rtol=1e-15)
    t_neg, t_pos = as_np(*intersect_trust_region(np.array([0.5, -0.5, 0]), np.array([0, 0, 1.0]),
                                                 1.0))
    assert_allclose([t_neg, t_pos], [-2**-0.5, 2**-0.5], rtol=1e-15)


@pytest.mark.parametrize("n, split_every", [(1, 2), (2, 2), (5, 2), (8, 8), (9, 8), (65, 8), (100, 3)])
def test_reduction_tree_covers_every_partition_once_per_level(n, split_every):
    levels = reduction_tree(n, split_every)
    width = n
    for groups in levels:
        assert [i for g in groups for i in g] == list(range(width))
        assert all(1 <= len(g) <= split_every for g in groups)
        width = len(groups)
    assert width == 1
    assert len(levels) == (0 if n == 1 else int(np.ceil(np.log(n) / np.log(split_every) - 1e-12)))


def test_combine_adds_normal_statistics_and_refactors_qr():
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((k, 3)) for k in (5, 7, 4)]
    rs = [rng.standard_normal(k) for k in (5, 7, 4)]
    summary = lambda i: np.full((1, 7), float(i))            # noqa: E731
    normal = [(np.float64(len(r)), 0.5 * r @ r, b.T @ r, b.T @ b, summary(i))
              for i, (b, r) in enumerate(zip(blocks, rs))]
    n, cost, g, H, s = reduce_parts(normal, NormalStats, 2)
    Jall, rall = np.vstack(blocks), np.concatenate(rs)
    assert n == 16
    assert_allclose(cost, 0.5 * rall @ rall, rtol=1e-13)
    assert_allclose(g, Jall.T @ rall, rtol=1e-13)
    assert_allclose(H, Jall.T @ Jall, rtol=1e-13)
    assert_array_equal(s[:, 0], [0, 1, 2])                   # summaries stacked in order
    qr = [(np.float64(len(r)), 0.5 * r @ r, np.linalg.qr(np.column_stack([b, r]), mode="r"),
           summary(i)) for i, (b, r) in enumerate(zip(blocks, rs))]
    n, cost, R, _ = combine_task(QRStats, *qr)
    RtR = R.T @ R
    A = np.column_stack([Jall, rall])
    assert_allclose(RtR, A.T @ A, rtol=1e-12)                # the same Gram matrix


def test_trust_region_factors_of_both_statistics_solve_the_same_subproblem():
    """Normal equations (eigh of dHd + diag) and TSQR (SVD of [R11·d; √diag]) factor the
    same damped Gauss–Newton system: its solution and the scaled gradient agree with a
    direct solve."""
    rng = np.random.default_rng(3)
    J, r = rng.standard_normal((20, 3)), rng.standard_normal(20)
    d, diag_h = rng.uniform(0.5, 2.0, 3), rng.uniform(0.0, 0.3, 3)
    g, H = J.T @ r, J.T @ J
    R = np.linalg.qr(np.column_stack([J, r]), mode="r")
    normal = NormalStats(20.0, 0.5 * r @ r, g, H)
    qr = QRStats(20.0, 0.5 * r @ r, R)
    expected = np.linalg.solve(d[:, None] * H * d[None, :] + np.diag(diag_h), d * g)
    for stats in (normal, qr):
        g_, H_, R11, q = (np.asarray(a) for a in stats.normal_form())
        assert_allclose(g_, g, rtol=1e-12)
        assert_allclose(H_, H, rtol=1e-12)
        s, V, suf, gn = (np.asarray(a) for a in type(stats).trust_region_factor(
            g_, H_, R11, q, d, diag_h))
        assert np.all(np.diff(s) <= 0)                           # descending
        assert_allclose(V @ gn, expected, rtol=1e-10)
        assert_allclose(V @ suf, d * g, rtol=1e-10)
