"""Passes over many small partitions: coalesced into units, reads fused, same numbers.

References: the sums of the statistics written with numpy (closed form), the pass with
one task a partition (bit for bit), and scipy's ``curve_fit`` on the same data.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax.numpy as jnp

import nlsq_dask
from nlsq_dask.engines.reduce import COALESCE_BELOW, MIN_UNITS, UNIT_POINTS, unit_depth

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

P = np.array([2.1, 0.45, 0.25])


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 10.0, n)
    y = 2.0 * np.exp(-0.5 * x) + 0.3 + rng.normal(0.0, 0.05, n)
    sigma = rng.uniform(0.5, 1.5, n)
    return x, y, sigma


def _runner(arrays, split_every=8, depth=None, reduction="normal"):
    from nlsq_dask.engines.dask_engine import PassRunner
    from nlsq_dask.solver import ModelSpec
    from nlsq_dask.solver.problem import Problem
    from nlsq_dask.solver.stats import stats_type

    spec = ModelSpec(decay, ("a", "b", "c"), "vector", 1)
    return PassRunner(Problem(spec, stats=stats_type(reduction)), arrays, n_x=1,
                      split_every=split_every, depth=depth)


def _numpy_sums(x, y, sigma, p):
    a, b, c = p
    e = np.exp(-b * x)
    r = (a * e + c - y) / sigma
    J = np.stack([e, -a * x * e, np.ones_like(x)]) / sigma
    return 0.5 * r @ r, J @ r, J @ J.T


@pytest.mark.parametrize("chunk, n, split_every, depth", [
    (10, 10**6, 8, 3),          # 10^5 partitions of 10 points: 512 a unit, 196 units
    (50, 10**6, 8, 2),          # 2x10^4 partitions: 64 a unit
    (1000, 10**6, 8, 1),
    (COALESCE_BELOW, 10**7, 8, 0),   # large enough: one task a partition
    (10, 10**6, 2, 10),         # split_every 2: as many levels as leave 64 units
    (10, 1000, 8, 0),           # 100 partitions: fewer units than MIN_UNITS otherwise
])
def test_unit_depth(chunk, n, split_every, depth):
    chunks = (chunk,) * (n // chunk)
    assert unit_depth(chunks, split_every) == depth
    if depth:
        size = split_every ** depth
        assert size * chunk <= UNIT_POINTS
        assert -(-len(chunks) // size) >= MIN_UNITS


@pytest.mark.parametrize("reduction", ["normal", "qr"])
def test_coalesced_pass_is_bitwise_the_pass_of_one_task_a_partition(reduction):
    """Whatever the grouping of partitions into tasks, the same numbers, bit for bit;
    and they are the statistics' sums (numpy, closed form). Uneven chunks, σ, a last
    unit that is not full."""
    x, y, sigma = _data(6007)
    chunks = (7,) * 858 + (1,)
    arrays = [da.from_array(a, chunks=(chunks,)) for a in (x, y, sigma)]
    passes = {d: _runner(arrays, depth=d, reduction=reduction)(P) for d in (0, 1, 2, 3)}
    assert [_runner(arrays, depth=d).n_units for d in (0, 1, 2, 3)] == [859, 108, 14, 2]
    for d in (1, 2, 3):
        for u, v in zip(passes[0], passes[d]):
            assert np.array_equal(np.asarray(u), np.asarray(v)), d
    cost, g, H = _numpy_sums(x, y, sigma, P)
    stats = passes[2]
    assert float(stats.n) == x.size
    np.testing.assert_allclose(float(stats.cost), cost, rtol=1e-12)
    if reduction == "normal":
        np.testing.assert_allclose(np.asarray(stats.g), g, rtol=1e-11)
        np.testing.assert_allclose(np.asarray(stats.H), H, rtol=1e-11)


def test_subset_of_units_is_the_sum_of_its_partitions():
    x, y, sigma = _data(40_000)
    arrays = [da.from_array(a, chunks=10) for a in (x, y, sigma)]
    runner = _runner(arrays)
    assert runner.depth > 0
    units = [0, 3, runner.n_units - 1]
    idx = np.concatenate([np.arange(10 * p, 10 * p + 10) for p in runner.partitions_of(units)])
    cost, g, _ = _numpy_sums(x[idx], y[idx], sigma[idx], P)
    stats = runner(P, parts=units)
    assert float(stats.n) == idx.size
    np.testing.assert_allclose(float(stats.cost), cost, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(stats.g), g, rtol=1e-11)
    assert runner.fraction(units) == pytest.approx(idx.size / x.size)


def test_pass_graph_fuses_reads_into_one_task_a_unit(tmp_path):
    """From zarr: no read task of its own per block; the units read their blocks."""
    pytest.importorskip("zarr")
    from dask._task_spec import convert_legacy_graph

    x, y, _ = _data(3200)
    da.to_zarr(da.from_array(x, chunks=3200), str(tmp_path / "x.zarr"))
    da.to_zarr(da.from_array(y, chunks=3200), str(tmp_path / "y.zarr"))
    xz = da.from_zarr(str(tmp_path / "x.zarr"), chunks=5)     # 640 reads of one zarr chunk
    yz = da.from_zarr(str(tmp_path / "y.zarr"), chunks=5)
    runner = _runner([xz, yz])
    hlg, final, _ = runner.graph(P)
    dsk = convert_legacy_graph(dict(hlg))
    stats = [k for k in dsk if isinstance(k, tuple) and str(k[0]).startswith("nlsq-stats-")]
    assert len(stats) == runner.n_units == 80
    others = [k for k in dsk if not (isinstance(k, tuple) and str(k[0]).startswith("nlsq-"))]
    assert len(others) <= 2            # the two zarr arrays, shared by every read
    cost, _, _ = _numpy_sums(x, y, np.ones_like(x), P)
    np.testing.assert_allclose(float(runner(P).cost), cost, rtol=1e-12)


@pytest.mark.parametrize("tier", ["streaming", "chunked", "standard"])
def test_fit_over_twenty_thousand_partitions_is_scipy_s(tier):
    from scipy.optimize import curve_fit

    x, y, _ = _data(200_000)
    ref, _ = curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, x, y, p0=[2.5, 0.6, 0.2],
                       ftol=1e-12, xtol=1e-12, gtol=1e-12)
    res = nlsq_dask.fit(decay, da.from_array(x, chunks=10), da.from_array(y, chunks=10),
                        p0=[2.5, 0.6, 0.2], tier=tier, ftol=1e-12, xtol=1e-12, gtol=1e-12)
    assert res.success and res.tier.value == tier
    if tier != "standard":
        assert res.extras["n_partitions"] == 20_000
    np.testing.assert_allclose(res.popt, ref, rtol=1e-9)


def test_load_of_many_chunks_is_dask_compute_s():
    """The STANDARD tier's grouped load gives what ``dask.compute`` gives: arrays of
    2,500 blocks (three load tasks each), one derived from another (their reads shared),
    a numpy array among them, unequal chunks and a reversed view."""
    from nlsq_dask.engines.fusion import load

    x0 = np.random.default_rng(3).normal(size=25_000)
    x = da.from_array(x0, chunks=10)
    derived = 2.0 * x + 1.0
    ragged = da.from_array(x0, chunks=((7, 3) * 2_500,))[::-1]
    got = load([x, derived, x0, ragged])
    want = dask.compute(x, derived, x0, ragged)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)


def test_checkpointed_coalesced_fit_is_bitwise_the_plain_one(tmp_path):
    x, y, _ = _data(100_000)
    kw = dict(p0=[2.5, 0.6, 0.2], tier="streaming")
    xs, ys = da.from_array(x, chunks=25), da.from_array(y, chunks=25)
    plain = nlsq_dask.fit(decay, xs, ys, **kw)
    stored = nlsq_dask.fit(decay, xs, ys, enable_checkpoints=True,
                           checkpoint_dir=str(tmp_path), **kw)
    assert stored.extras["checkpoint"]["path"]
    assert np.array_equal(plain.popt, stored.popt) and plain.nfev == stored.nfev
