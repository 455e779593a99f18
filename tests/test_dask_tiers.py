"""CHUNKED and STREAMING tiers give the in-memory (STANDARD) answer.

Every case fits the same data twice — in memory with numpy inputs (``tier='standard'``)
and with dask (or xarray) inputs on the threaded scheduler — with the same tolerances,
and requires ``popt`` equal to 1e-10 and ``pcov`` to 1e-8 (relative). The only
difference between the two is the order of the sums (tiles vs partitions + tree), so
the answers agree to rounding.

Compiles dominate the run time: models, data lengths and chunk sizes are shared
between cases wherever possible, and the in-memory reference is computed once per
problem.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nist
import nlsq_dask

da = pytest.importorskip("dask.array")

TIERS = ("chunked", "streaming")
TOL = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=400)

_REFERENCES: dict = {}


def reference(key, model, x, y, p0, **kw):
    """The in-memory fit (numpy inputs, STANDARD tier), computed once per key."""
    if key not in _REFERENCES:
        _REFERENCES[key] = nlsq_dask.fit(model, x, y, p0, tier="standard", **TOL, **kw)
    ref = _REFERENCES[key]
    assert ref.tier.value == "standard"
    assert ref.success, ref.message
    return ref


def assert_same_fit(res, ref, tier):
    assert res.tier.value == tier
    assert res.success, res.message
    assert res.n_points_used == ref.n_points_used
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-10, atol=0)
    scale = np.abs(ref.pcov).max()
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-8, atol=1e-8 * scale)
    np.testing.assert_allclose(res.cost, ref.cost, rtol=1e-9)


def dask_x(x, chunks):
    """A dask copy of ``x`` ((N,) or (k, N)) with ``chunks`` along the point axis."""
    if x.ndim == 2:
        return da.from_array(x, chunks=(x.shape[0], chunks))
    return da.from_array(x, chunks=(chunks,))


def uneven(n, pattern):
    """Chunk lengths cycling through ``pattern`` until they add up to ``n``."""
    out, i = [], 0
    while sum(out) < n:
        out.append(min(pattern[i % len(pattern)], n - sum(out)))
        i += 1
    return tuple(out)


# --------------------------------------------------------------------------- NIST
# (problem, start index, chunks): chunks is an int (even chunks), a tuple of
# lengths (uneven; a pattern cycled to cover N) or -1 (one chunk).
NIST_CASES = [
    ("Misra1a", 0, 5),                   # 3 chunks: 5, 5, 4
    ("Misra1a", 1, (5, 1, 3)),           # uneven
    ("DanWood", 0, (1, 3, 2)),           # 6 points, uneven
    ("DanWood", 1, -1),                  # one chunk
    ("Chwirut2", 0, (5, 17, 3)),         # uneven, many chunks
    ("Chwirut2", 1, 18),
    ("Nelson", 0, 40),                   # 2-D x, (2, N) dask array
    ("Nelson", 1, (5, 17, 3, 29)),
    ("Rat42", 0, 3),
    ("Rat42", 1, -1),
    ("Rat43", 0, (2, 7)),
    ("Rat43", 1, 5),
    ("Eckerle4", 0, (5, 17, 3)),
    ("Eckerle4", 1, 12),
    ("MGH09", 0, 4),
    ("MGH09", 1, (3, 1, 5)),
    ("BoxBOD", 0, 2),
    ("BoxBOD", 1, (1, 2, 3)),
]


def _nist_id(case):
    name, start, chunks = case
    return f"{name}-s{start + 1}-{'one' if chunks == -1 else chunks}".replace(" ", "")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("case", NIST_CASES, ids=_nist_id)
def test_nist_matches_in_memory(case, tier):
    name, start, chunks = case
    p = nist.load(name)
    n = p.y.shape[0]
    ref = reference((name, start), p.model, p.x, p.y, p.starts[start])
    if isinstance(chunks, tuple):
        chunks = uneven(n, chunks)
    elif chunks == -1:
        chunks = n
    xd, yd = dask_x(p.x, chunks), da.from_array(p.y, chunks=(chunks,))
    if chunks != n:
        assert yd.numblocks[0] >= 3
    res = nlsq_dask.fit(p.model, xd, yd, p.starts[start], tier=tier, **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_nist_tuple_of_dask_arrays(tier):
    """``x`` as a tuple of two 1-D dask arrays (Nelson's model indexes x[0], x[1])."""
    p = nist.load("Nelson")
    ref = reference(("Nelson-tuple", 1), p.model, (p.x[0], p.x[1]), p.y, p.starts[1])
    xs = (da.from_array(p.x[0], chunks=30), da.from_array(p.x[1], chunks=30))
    res = nlsq_dask.fit(p.model, xs, da.from_array(p.y, chunks=30), p.starts[1], tier=tier, **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_nist_qr_reduction(tier):
    p = nist.load("DanWood")
    ref = reference(("DanWood-qr", 0), p.model, p.x, p.y, p.starts[0], reduction="qr")
    res = nlsq_dask.fit(p.model, da.from_array(p.x, chunks=2), da.from_array(p.y, chunks=2),
                        p.starts[0], tier=tier, reduction="qr", **TOL)
    assert_same_fit(res, ref, tier)
    assert res.config.reduction == "qr"


# ---------------------------------------------------------------------- synthetic
def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


N = 240
CHUNK = 60
P0 = np.array([1.0, 1.0, 0.0])
_rng = np.random.default_rng(42)
X = np.linspace(0.0, 4.0, N)
SIGMA = 0.05 + 0.1 * _rng.random(N)
Y = 2.5 * np.exp(-1.3 * X) + 0.4 + SIGMA * _rng.standard_normal(N)
Y_OUT = Y.copy()
Y_OUT[::17] += 1.5 * (1 + _rng.random(Y_OUT[::17].shape))  # outliers


def dx(a=X, chunks=CHUNK):
    return da.from_array(a, chunks=(chunks,))


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("loss", ["linear", "soft_l1", "huber", "cauchy", "arctan"])
def test_losses_with_outliers(loss, tier):
    f_scale = 0.2
    ref = reference(("loss", loss), decay, X, Y_OUT, P0, loss=loss, f_scale=f_scale)
    res = nlsq_dask.fit(decay, dx(), dx(Y_OUT), P0, tier=tier, loss=loss, f_scale=f_scale, **TOL)
    assert_same_fit(res, ref, tier)
    assert res.config.loss == loss


@pytest.mark.parametrize("tier", TIERS)
def test_sigma_as_dask_array(tier):
    ref = reference("sigma", decay, X, Y, P0, sigma=SIGMA)
    res = nlsq_dask.fit(decay, dx(), dx(Y), P0, sigma=dx(SIGMA), tier=tier, **TOL)
    assert_same_fit(res, ref, tier)
    # the weights matter: the unweighted fit is a different answer
    plain = reference("plain", decay, X, Y, P0)
    assert np.max(np.abs(res.popt / plain.popt - 1)) > 1e-6


@pytest.mark.parametrize("tier", TIERS)
def test_bounds(tier):
    bounds = ([0.0, 0.0, -1.0], [10.0, 2.0, 1.0])  # the bounded (reflective) path, optimum inside
    ref = reference("bounds", decay, X, Y, [1.0, 0.5, 0.0], bounds=bounds)
    res = nlsq_dask.fit(decay, dx(), dx(Y), [1.0, 0.5, 0.0], bounds=bounds, tier=tier, **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_active_bound(tier):
    # b = 1.3 lies outside: the interior (reflective) iterates approach the bound
    # asymptotically, so where they stop depends on rounding at the 1e-11 level.
    bounds = ([0.0, 0.0, -1.0], [10.0, 1.0, 1.0])
    ref = reference("active-bound", decay, X, Y, [1.0, 0.5, 0.0], bounds=bounds)
    assert ref.popt[1] == pytest.approx(1.0, abs=1e-6)
    res = nlsq_dask.fit(decay, dx(), dx(Y), [1.0, 0.5, 0.0], bounds=bounds, tier=tier, **TOL)
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-8)
    assert np.all(res.popt >= bounds[0]) and np.all(res.popt <= bounds[1])


@pytest.mark.parametrize("tier", TIERS)
def test_qr_reduction_synthetic(tier):
    ref = reference("qr", decay, X, Y, P0, sigma=SIGMA, reduction="qr")
    res = nlsq_dask.fit(decay, dx(), dx(Y), P0, sigma=dx(SIGMA), tier=tier, reduction="qr", **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_xarray_dask_backed(tier):
    xr = pytest.importorskip("xarray")
    xa = xr.DataArray(dx(), dims="t", name="x")
    ya = xr.DataArray(dx(Y), dims="t", name="y")
    sa = xr.DataArray(dx(SIGMA), dims="t", name="sigma")
    ref = reference("sigma", decay, X, Y, P0, sigma=SIGMA)
    res = nlsq_dask.fit(decay, xa, ya, P0, sigma=sa, tier=tier, **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_nonfinite_points_are_skipped_and_counted(tier):
    y = Y.copy()
    y[[3, 50, 101, 238]] = np.nan
    y[77] = np.inf
    x = X.copy()
    x[120] = -np.inf  # a bad x drops its point too
    n_bad = 6
    ref = reference("nan", decay, x, y, P0, nan_policy="omit")
    assert ref.n_points_used == N - n_bad
    res = nlsq_dask.fit(decay, dx(x), dx(y), P0, tier=tier, **TOL)
    assert res.n_points_used == N - n_bad
    assert_same_fit(res, ref, tier)
    # and the same as fitting the clean subset
    keep = np.isfinite(x) & np.isfinite(y)
    clean = reference("nan-clean", decay, x[keep], y[keep], P0)
    np.testing.assert_allclose(res.popt, clean.popt, rtol=1e-10)


@pytest.mark.parametrize("tier", TIERS)
def test_misaligned_chunks_are_aligned(tier):
    ref = reference("plain", decay, X, Y, P0)
    xd, yd = dx(chunks=60), dx(Y, chunks=80)
    assert xd.chunks != yd.chunks
    res = nlsq_dask.fit(decay, xd, yd, P0, tier=tier, **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_numpy_x_with_dask_y(tier):
    ref = reference("plain", decay, X, Y, P0)
    res = nlsq_dask.fit(decay, X, dx(Y), P0, tier=tier, **TOL)
    assert_same_fit(res, ref, tier)


@pytest.mark.parametrize("tier", TIERS)
def test_badly_misaligned_chunks_raise(tier):
    # the common refinement of chunks 10 / 11 / 13 has 59 pieces > 2 x 24 partitions
    with pytest.raises(ValueError, match="rechunk"):
        nlsq_dask.fit(decay, dx(chunks=10), dx(Y, chunks=11), P0, sigma=dx(SIGMA, chunks=13),
                      tier=tier, **TOL)


def test_badly_misaligned_message_names_arrays():
    from nlsq_dask.engines.partitions import align_chunks

    arrays = [dx(chunks=10), dx(Y, chunks=11), dx(SIGMA, chunks=13)]
    with pytest.raises(ValueError, match="rechunk") as info:
        align_chunks(arrays, ["x[0]", "y", "sigma"])
    msg = str(info.value)
    assert "x[0]" in msg and "sigma" in msg
    # mildly misaligned inputs get the common refinement, without reading a chunk twice
    out = align_chunks([dx(chunks=60), dx(Y, chunks=80)], ["x[0]", "y"])
    assert out[0].chunks == out[1].chunks == ((60, 20, 40, 40, 20, 60),)
