"""Bad inputs to ``nlsq_dask.fit`` fail early with a clear message."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

import nlsq_dask

X = np.linspace(0.0, 2.0, 40)
Y = 2.0 * np.exp(-1.5 * X)


def model(x, a, b):
    return a * jnp.exp(-b * x)


# --- shapes ------------------------------------------------------------------------------

def test_x_y_length_mismatch():
    with pytest.raises(ValueError, match=r"x has 39 points .* but y has 40"):
        nlsq_dask.fit(model, X[:-1], Y)


def test_x_tuple_member_length_mismatch():
    with pytest.raises(ValueError, match=r"x has 39 points \(input 1\) but y has 40"):
        nlsq_dask.fit(lambda x, a, b: a * x[0] + b * x[1], (X, X[:-1]), Y)


def test_x_with_three_dimensions_reaches_the_model_in_its_shape():
    # scipy's N-D xdata: the last axis is the point axis (issue 15)
    ref = nlsq_dask.fit(model, X, Y)
    r = nlsq_dask.fit(lambda x, *p: model(x[0, 0], *p), X.reshape(1, 1, -1), Y,
                      param_names=ref.param_names)
    np.testing.assert_allclose(r.popt, ref.popt, rtol=1e-12)
    with pytest.raises(ValueError, match=r"x must be 1-D, \(k, N\), \(\.\.\., N\) or a tuple"):
        nlsq_dask.fit(model, 3.0, Y)


def test_y_two_dimensional():
    with pytest.raises(ValueError, match=r"y must be 1-D; got shape \(4, 10\)"):
        nlsq_dask.fit(model, X, Y.reshape(4, 10))


def test_empty_data():
    with pytest.raises(ValueError, match="y is empty"):
        nlsq_dask.fit(model, np.array([]), np.array([]))


# --- parameters and bounds -----------------------------------------------------------------

def test_p0_wrong_length():
    with pytest.raises(ValueError, match=r"p0 has 3 values but the model takes 2 parameters"):
        nlsq_dask.fit(model, X, Y, p0=[1.0, 2.0, 3.0])


def test_p0_not_finite():
    with pytest.raises(ValueError, match="p0 must be finite"):
        nlsq_dask.fit(model, X, Y, p0=[np.nan, 1.0])


def test_lower_bound_above_upper_bound():
    with pytest.raises(ValueError, match=r"lower bound must be strictly less .* parameter 1"):
        nlsq_dask.fit(model, X, Y, p0=[0.5, 1.0], bounds=([0.0, 2.0], [1.0, 1.0]))


def test_equal_bounds():
    with pytest.raises(ValueError, match="strictly less"):
        nlsq_dask.fit(model, X, Y, p0=[1.0, 1.0], bounds=([1.0, 0.0], [1.0, 2.0]))


def test_p0_outside_bounds():
    with pytest.raises(ValueError, match=r"Initial guess is outside of provided bounds: p0 is outside them for \['a'\]"):
        nlsq_dask.fit(model, X, Y, p0=[5.0, 1.0], bounds=(0.0, 2.0))


def test_bounds_not_a_pair():
    with pytest.raises(ValueError, match=r"bounds must be a 2-tuple"):
        nlsq_dask.fit(model, X, Y, bounds=(0.0, 1.0, 2.0))


def test_bounds_wrong_length():
    with pytest.raises(ValueError, match="bounds must have 2 values each"):
        nlsq_dask.fit(model, X, Y, bounds=([0, 0, 0], [1, 1, 1]))


def test_duplicate_param_names():
    with pytest.raises(ValueError, match="param_names must be unique"):
        nlsq_dask.fit(model, X, Y, param_names=["a", "a"])


def test_varargs_model_needs_p0():
    with pytest.raises(TypeError, match="pass p0 or param_names"):
        nlsq_dask.fit(lambda x, *p: p[0] * x, X, Y)


def test_model_without_parameters():
    with pytest.raises(TypeError, match="model takes no parameters"):
        nlsq_dask.fit(lambda x: x, X, Y)


# --- model -------------------------------------------------------------------------------

def test_model_not_callable():
    with pytest.raises(TypeError, match="model must be callable"):
        nlsq_dask.fit(3.0, X, Y)


# Untraceable models: fit() traces the model abstractly first and names jax.numpy.

def test_model_calls_float_on_a_parameter():
    with pytest.raises(TypeError, match="jax.numpy"):
        nlsq_dask.fit(lambda x, a, b: float(a) * x + b, X, Y)


def test_model_uses_math_exp():
    with pytest.raises(TypeError, match="jax.numpy"):
        nlsq_dask.fit(lambda x, a, b: a * math.exp(-b) * x, X, Y)


def test_model_uses_numpy_exp():
    with pytest.raises(TypeError, match="jax.numpy"):
        nlsq_dask.fit(lambda x, a, b: a * np.exp(-b * x), X, Y)


def test_model_branches_on_a_parameter():
    with pytest.raises(TypeError, match="jax.numpy"):
        nlsq_dask.fit(lambda x, a, b: a * x if a > 0 else b * x, X, Y)


def test_model_returns_wrong_shape():
    with pytest.raises(TypeError, match="return values shaped like x"):
        nlsq_dask.fit(lambda x, a, b: jnp.ones(3) * a + b, X, Y)


def test_residuals_not_finite_at_p0():
    with pytest.raises(ValueError, match="not finite at the initial point"):
        nlsq_dask.fit(lambda x, a, b: jnp.log(a - 5.0) + b * x, X, Y, p0=[1.0, 1.0])


# --- options -----------------------------------------------------------------------------

def test_unknown_loss():
    with pytest.raises(ValueError, match=r"loss='l1' is not valid; expected one of .*soft_l1"):
        nlsq_dask.fit(model, X, Y, loss="l1")


def test_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction='svd' is not valid"):
        nlsq_dask.fit(model, X, Y, reduction="svd")


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"preset='nope' is not a known preset"):
        nlsq_dask.fit(model, X, Y, preset="nope")


def test_bad_tier_string():
    with pytest.raises(ValueError, match=r"tier='nope' is not a valid WorkflowTier"):
        nlsq_dask.fit(model, X, Y, tier="nope")


def test_bad_goal_string():
    with pytest.raises(ValueError, match=r"goal='nope' is not a valid OptimizationGoal"):
        nlsq_dask.fit(model, X, Y, goal="nope")


def test_unknown_keyword():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['foo'\]"):
        nlsq_dask.fit(model, X, Y, foo=1)


@pytest.mark.parametrize("name, value, match", [
    ("ftol", -1.0, "ftol must be a non-negative finite number"),
    ("f_scale", -1.0, "f_scale must be a positive finite number"),
    ("max_nfev", 0, "max_nfev must be an integer >= 1"),
])
def test_bad_numeric_options(name, value, match):
    with pytest.raises(ValueError, match=match):
        nlsq_dask.fit(model, X, Y, **{name: value})


def test_negative_x_scale():
    with pytest.raises(ValueError, match="x_scale must be positive and finite"):
        nlsq_dask.fit(model, X, Y, x_scale=[-1.0, 1.0])


def test_bad_nan_policy():
    with pytest.raises(ValueError, match=r"nan_policy must be one of \['raise', 'omit'\]"):
        nlsq_dask.fit(model, X, Y, nan_policy="propagate")


# --- data values -------------------------------------------------------------------------

def test_nan_in_y_raises_by_default():
    y = Y.copy()
    y[3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(y: 1\).*nan_policy='omit'"):
        nlsq_dask.fit(model, X, y)


def test_inf_in_x_raises_by_default():
    x = X.copy()
    x[0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf \(x: 1\)"):
        nlsq_dask.fit(model, x, Y)


def test_nan_policy_omit_drops_the_points():
    y = Y.copy()
    y[[1, 5, 7]] = np.nan
    res = nlsq_dask.fit(model, X, y, p0=[1.0, 1.0], nan_policy="omit")
    assert res.n_points_used == X.size - 3
    assert res.dof == X.size - 3 - 2
    np.testing.assert_allclose(res.popt, [2.0, 1.5], rtol=1e-8)


def test_all_points_nan_with_omit():
    with pytest.raises(nlsq_dask.InsufficientDataError, match="no usable data point"):
        nlsq_dask.fit(model, X, np.full_like(Y, np.nan), nan_policy="omit")


def test_sigma_two_dimensional():
    # a covariance matrix as scipy's (issue 15): the identity is unit weights
    ref = nlsq_dask.fit(model, X, Y)
    np.testing.assert_allclose(nlsq_dask.fit(model, X, Y, sigma=np.eye(X.size)).popt, ref.popt)
    with pytest.raises(ValueError, match=r"covariance matrix of y and must have shape \(40, 40\)"):
        nlsq_dask.fit(model, X, Y, sigma=np.eye(X.size - 1))
    with pytest.raises(ValueError, match="must be positive definite"):
        nlsq_dask.fit(model, X, Y, sigma=np.ones((X.size, X.size)))


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_sigma_not_positive(bad):
    sigma = np.ones_like(Y)
    sigma[4] = bad
    with pytest.raises(ValueError, match="sigma must be positive everywhere"):
        nlsq_dask.fit(model, X, Y, sigma=sigma)


def test_sigma_wrong_length():
    with pytest.raises(ValueError, match="sigma has 39 values but y has 40"):
        nlsq_dask.fit(model, X, Y, sigma=np.ones(39))


@pytest.mark.parametrize("y", [np.array(["a"] * 40), np.array([1, "a"] * 20, dtype=object),
                               Y + 0j])
def test_non_numeric_y(y):
    with pytest.raises(TypeError, match="y must hold real numbers; got dtype"):
        nlsq_dask.fit(model, X, y)


def test_non_numeric_x():
    with pytest.raises(TypeError, match="x must hold real numbers"):
        nlsq_dask.fit(model, np.array(["x"] * 40), Y)


def test_x_scale_unknown_string_and_wrong_length():
    with pytest.raises(ValueError, match="x_scale must be 'jac' or positive numbers; got 'foo'"):
        nlsq_dask.fit(model, X, Y, p0=[1.0, 1.0], x_scale="foo")
    with pytest.raises(ValueError, match="2 positive numbers \\(one per parameter\\)"):
        nlsq_dask.fit(model, X, Y, p0=[1.0, 1.0], x_scale=[1.0, 2.0, 3.0])
