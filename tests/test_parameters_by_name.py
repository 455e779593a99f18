"""Parameters by name (issue 17): ``p0`` and ``bounds`` as dicts, and ``fixed=`` on every
tier and in the accessor, checked against scipy's ``curve_fit`` of the reduced model."""

from __future__ import annotations

import dask.array as da
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy.optimize import curve_fit

import nlsq_dask

X = np.linspace(0, 10, 2_000)
Y = 2.0 * np.exp(-0.5 * X) + 0.3 + np.random.default_rng(1).normal(0, 0.02, X.size)


def model(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def np_model(x, a, b, c):
    return a * np.exp(-b * x) + c


def test_dict_p0_fills_the_parameters_it_leaves_out_with_scipys_default():
    got = nlsq_dask.fit(model, X, Y, p0={"a": 2.5, "b": 0.6})
    ref, _ = curve_fit(np_model, X, Y, p0=[2.5, 0.6, 1.0])
    np.testing.assert_allclose(got.popt, ref, rtol=1e-7)
    np.testing.assert_allclose(got.p0, [2.5, 0.6, 1.0])


def test_dict_bounds_are_per_name_and_unbounded_elsewhere():
    got = nlsq_dask.fit(model, X, Y, p0={"a": 2.5, "b": 0.4, "c": 0.1}, bounds={"b": (0, 0.45)})
    ref, _ = curve_fit(np_model, X, Y, p0=[2.5, 0.4, 0.1],
                       bounds=([-np.inf, 0, -np.inf], [np.inf, 0.45, np.inf]))
    np.testing.assert_allclose(got.popt, ref, rtol=1e-6)
    assert got.active_mask.tolist() == [0, 1, 0]


def test_a_model_taking_star_params_is_named_by_the_dict():
    def line(x, *p):
        return p[0] * x + p[1]

    got = nlsq_dask.fit(line, X, 3 * X + 1, p0={"slope": 1.0, "offset": 0.0})
    assert got.param_names == ("slope", "offset")
    np.testing.assert_allclose(got.popt, [3, 1], atol=1e-9)


def _reduced_reference(b=None, c=None):
    free = lambda x, a, q: np_model(x, a, q, c) if c is not None else np_model(x, a, b, q)  # noqa: E731
    return curve_fit(free, X, Y, p0=[2.5, 0.6 if c is not None else 0.2])


@pytest.mark.parametrize("tier", ["standard", "chunked", "streaming"])
def test_fixed_parameter_leaves_the_solve_on_every_tier(tier):
    x, y = (X, Y) if tier == "standard" else (da.from_array(X, 500), da.from_array(Y, 500))
    got = nlsq_dask.fit(model, x, y, p0=[2.5, 0.6, 0.2], fixed={"c": 0.3}, tier=tier)
    ref, ref_cov = _reduced_reference(c=0.3)
    np.testing.assert_allclose(got.popt, [*ref, 0.3], rtol=1e-7)
    np.testing.assert_allclose(got.pcov[:2, :2], ref_cov, rtol=1e-5)
    assert np.all(got.pcov[2] == 0) and np.all(got.pcov[:, 2] == 0)
    assert got.param_names == ("a", "b", "c") and got.perr[2] == 0
    assert got.grad[2] == 0 and got.active_mask[2] == 0


def test_fixed_by_name_keeps_p0s_value_and_a_middle_parameter_can_be_fixed():
    got = nlsq_dask.fit(model, X, Y, p0={"a": 2.5, "b": 0.5, "c": 0.2}, fixed=["b"])
    ref, ref_cov = _reduced_reference(b=0.5)
    np.testing.assert_allclose(got.popt, [ref[0], 0.5, ref[1]], rtol=1e-7)
    np.testing.assert_allclose(got.pcov[np.ix_([0, 2], [0, 2])], ref_cov, rtol=1e-5)


def test_fixed_with_a_users_jacobian_and_with_multistart():
    def jac(x, a, b, c):
        e = jnp.exp(-b * x)
        return jnp.stack([e, -a * x * e, jnp.ones_like(x)], axis=-1)

    ref, _ = _reduced_reference(c=0.3)
    with_jac = nlsq_dask.fit(model, X, Y, p0=[2.5, 0.6, 0.2], jac=jac, fixed={"c": 0.3})
    np.testing.assert_allclose(with_jac.popt, [*ref, 0.3], rtol=1e-7)
    starts = nlsq_dask.fit(model, X, Y, p0=[2.5, 0.6, 0.2], preset="robust", fixed={"c": 0.3})
    np.testing.assert_allclose(starts.popt, [*ref, 0.3], rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(p0={"a": 1, "k": 2}), r"p0 names \['k'\]"),
    (dict(bounds={"k": (0, 1)}), r"bounds names \['k'\]"),
    (dict(fixed={"k": 1.0}), r"fixed names \['k'\]"),
    (dict(fixed={"c": 5.0}, bounds={"c": (0, 1)}), "outside its bounds"),
    (dict(fixed={"a": 1, "b": 1, "c": 1}), "nothing is left to fit"),
    (dict(fixed=["c"]), "give p0"),
    (dict(fixed={"c": np.nan}), "must be finite"),
    (dict(bounds={"b": (0.5, 0.5)}), r"fixed=\{name: value\}"),
    (dict(bounds={"b": 3}), r"bounds\['b'\] must be a pair"),
])
def test_bad_names_and_values_are_refused_with_the_cause(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nlsq_dask.fit(model, X, Y, **kwargs)


def test_fixed_of_the_wrong_type_is_a_type_error():
    for bad in ("c", 3, {"c": "x"}):
        with pytest.raises(TypeError, match="fixed"):
            nlsq_dask.fit(model, X, Y, p0=[2.5, 0.6, 0.2], fixed=bad)


# ----------------------------------------------------------------------------- accessor
T = np.linspace(0, 5, 40)
AMP = np.random.default_rng(0).uniform(1, 3, (3, 4))
CUBE = xr.DataArray(AMP[..., None] * np.exp(-0.7 * T) + 0.2
                    + np.random.default_rng(2).normal(0, 0.01, (3, 4, 40)),
                    dims=("r", "c", "t"), coords={"t": T})


def test_accessor_holds_a_parameter_fixed_per_pixel():
    out = CUBE.chunk({"r": 1}).nlsq.fit("t", model, p0={"a": 2, "b": 1, "c": 0.2},
                                        fixed={"b": 0.7})
    assert out.curvefit_coefficients.chunks is not None           # still lazy
    out = out.compute()
    assert list(out.param.values) == ["a", "b", "c"]
    for i, j in [(0, 0), (2, 3)]:
        ref, ref_cov = curve_fit(lambda t, a, c: a * np.exp(-0.7 * t) + c, T,
                                 CUBE.values[i, j], p0=[2, 0.2])
        coef = out.curvefit_coefficients.values[i, j]
        np.testing.assert_allclose(coef[[0, 2]], ref, rtol=1e-6)
        assert coef[1] == 0.7
        cov = out.curvefit_covariance.values[i, j]
        np.testing.assert_allclose(cov[np.ix_([0, 2], [0, 2])], ref_cov, rtol=1e-4)
        assert np.all(cov[1] == 0) and np.all(cov[:, 1] == 0)


def test_accessor_global_fit_with_fixed_and_a_sequence_p0():
    out = CUBE.nlsq.fit("t", model, reduce_dims=["r", "c"], p0=[2, 1, 0.2], fixed=["c"])
    t = np.broadcast_to(T, CUBE.shape).ravel()
    ref, _ = curve_fit(lambda t, a, b: a * np.exp(-b * t) + 0.2, t, CUBE.values.ravel(),
                       p0=[2, 1])
    np.testing.assert_allclose(out.curvefit_coefficients.values, [*ref, 0.2], rtol=1e-6)
    assert np.all(out.curvefit_covariance.values[2] == 0)


def test_accessor_refuses_a_p0_it_cannot_read():
    with pytest.raises(ValueError, match="p0 has 2 values but the model takes 3"):
        CUBE.nlsq.fit("t", model, p0=[1, 2])
    with pytest.raises(TypeError, match=r"p0 must be a dict"):
        CUBE.nlsq.fit("t", model, p0="abc")
    with pytest.raises(TypeError, match=r"bounds must be a dict"):
        CUBE.nlsq.fit("t", model, bounds=[(0, 1)] * 3)


def test_a_fixed_parameter_is_not_counted_in_dof_and_is_kept_with_the_result(tmp_path):
    result = nlsq_dask.fit(model, X, Y, p0=[2.5, 0.6, 0.2], fixed={"c": 0.3})
    assert result.fixed == {"c": 0.3} and result.dof == X.size - 2 and result.n_free == 2
    chi2 = 2 * result.cost
    np.testing.assert_allclose(result.aic, X.size * np.log(chi2 / X.size) + 2 * 2)
    report = result.fit_report()
    assert "fixed" in report and "2 (+1 fixed)" in report
    assert nlsq_dask.FitResult.from_dict(result.to_dict()) == result
    path = tmp_path / "r.zarr"
    result.to_dataset().to_zarr(path)
    assert nlsq_dask.load_result(path).fixed == {"c": 0.3}
