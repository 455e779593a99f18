"""Subset-first dask fits: growing subsets of partitions, then full-data LM passes.

The answer must be the full-data optimum (scipy ``curve_fit`` on the same data; NIST
certified values), reached with fewer reads of the data, and the reads reported.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import jax.numpy as jnp

import nist
import nlsq_dask
from nlsq_dask import WorkflowConfig
from nlsq_dask.engines import subsets

da = pytest.importorskip("dask.array")


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


def gaussian(x, a, mu, s, c):
    return a * jnp.exp(-0.5 * ((x - mu) / s) ** 2) + c


def _np(model):
    return lambda x, *p: np.asarray(model(x, *p))


CASES = {
    "exponential": (decay, [2.0, 0.5, 0.3], [2.5, 0.6, 0.2]),
    "gaussian": (gaussian, [1.5, 5.0, 1.2, 0.2], [1.0, 4.5, 1.5, 0.0]),
}


def _data(model, truth, n, seed=0):
    x = np.linspace(0.0, 10.0, n)
    y = np.asarray(model(x, *truth)) + np.random.default_rng(seed).normal(0.0, 0.05, n)
    return x, y


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("tier", ["chunked", "streaming"])
def test_subset_first_reaches_the_full_data_optimum_in_fewer_reads(case, tier):
    from scipy.optimize import curve_fit

    model, truth, p0 = CASES[case]
    x, y = _data(model, truth, 400_000)
    ref, ref_cov = curve_fit(_np(model), x, y, p0=p0, ftol=1e-14, xtol=1e-14, gtol=1e-14)
    xs, ys = da.from_array(x, chunks=2000), da.from_array(y, chunks=2000)   # 200 partitions
    full = nlsq_dask.fit(model, xs, ys, p0=p0, tier=tier,
                         config=WorkflowConfig(subset_passes=False))
    first = nlsq_dask.fit(model, xs, ys, p0=p0, tier=tier)
    perr = np.sqrt(np.diag(ref_cov))
    for res in (full, first):
        assert res.success, res.message
        # both stop by the same tests on the full data: within a hundredth of a standard
        # error of scipy's optimum
        assert np.all(np.abs(res.popt - ref) <= 0.01 * perr)
    report = first.extras["subsets"]
    assert report["levels"] and report["levels"][0]["partitions"] == subsets.FIRST_UNITS
    assert first.n_passes == first.nfev + report["passes"]
    assert first.equivalent_passes == pytest.approx(first.nfev + report["equivalent_passes"])
    assert first.equivalent_passes < full.equivalent_passes == full.nfev == full.n_passes
    assert first.nfev <= 3 and "subsets" not in full.extras


def test_too_few_partitions_read_everything_from_the_first_pass():
    x, y = _data(decay, [2.0, 0.5, 0.3], 100_000)
    res = nlsq_dask.fit(decay, da.from_array(x, chunks=5000), da.from_array(y, chunks=5000),
                        p0=[2.5, 0.6, 0.2], tier="streaming")            # 20 partitions
    assert "subsets" not in res.extras
    assert res.n_passes == res.nfev == res.equivalent_passes


def test_progress_line_names_subsets_and_counts_reads(capsys):
    x, y = _data(decay, [2.0, 0.5, 0.3], 200_000)
    res = nlsq_dask.fit(decay, da.from_array(x, chunks=1000), da.from_array(y, chunks=1000),
                        p0=[2.5, 0.6, 0.2], tier="streaming", progress=True)
    lines = capsys.readouterr().err.splitlines()
    first = res.extras["subsets"]["levels"][0]
    share = f"subset {100 * first['fraction']:.3g}% pass   1 (incl. compile)"
    assert any(ln.startswith(share) for ln in lines), lines
    last = [ln for ln in lines if ln.startswith(f"pass {res.nfev:3d}")][-1]
    assert last.endswith(f"| {res.equivalent_passes:.2f} full passes read")


def test_a_resumed_checkpoint_goes_on_with_full_passes(tmp_path):
    """A stored fit resumes where it stopped: no subset passes before it."""
    x, y = _data(decay, [2.0, 0.5, 0.3], 200_000)
    xs, ys = da.from_array(x, chunks=1000), da.from_array(y, chunks=1000)
    kw = dict(p0=[2.5, 0.6, 0.2], tier="streaming", enable_checkpoints=True,
              checkpoint_dir=str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped = nlsq_dask.fit(decay, xs, ys, max_nfev=1, **kw)
    assert stopped.extras["subsets"]["levels"]
    resumed = nlsq_dask.fit(decay, xs, ys, **kw)
    assert resumed.extras["checkpoint"]["resumed"] and "subsets" not in resumed.extras
    again = nlsq_dask.fit(decay, xs, ys, config=WorkflowConfig(subset_passes=False),
                          p0=[2.5, 0.6, 0.2], tier="streaming")
    np.testing.assert_allclose(resumed.popt, again.popt, rtol=1e-5)


NIST_NAMES = sorted(p.stem for p in nist.DATA.glob("*.dat"))


def _nist_runner(name):
    from nlsq_dask.engines.dask_engine import PassRunner
    from nlsq_dask.solver import ModelSpec
    from nlsq_dask.solver.problem import Problem

    pr = nist.load(name)
    x = da.from_array(pr.x, chunks=(pr.x.shape[0], 1) if pr.x.ndim == 2 else 1)
    arrays = [x] if pr.x.ndim == 1 else [x[i] for i in range(pr.x.shape[0])]
    n_params = pr.starts[0].size
    names = tuple(f"b{i + 1}" for i in range(n_params))
    form = "vector" if pr.x.ndim == 1 else "stacked"
    spec = ModelSpec(pr.model, names, form, len(arrays))
    return PassRunner(Problem(spec), [*arrays, da.from_array(pr.y, chunks=1)],
                      n_x=len(arrays), split_every=8), n_params


@pytest.mark.parametrize("name", NIST_NAMES)
def test_nist_problems_are_too_small_for_subsets(name):
    """Every NIST problem, even cut into one partition a point (the most partitions it
    can have): no subset level, so its passes are exactly those without subsets."""
    runner, n_params = _nist_runner(name)
    assert runner.n_partitions == nist.load(name).y.size
    assert subsets.subset_levels(runner, n_params) == []


@pytest.mark.parametrize("name", ["Misra1a", "Chwirut2", "DanWood"])
def test_nist_in_one_point_partitions_reads_as_without_subsets(name):
    pr = nist.load(name)
    x, y = da.from_array(pr.x, chunks=1), da.from_array(pr.y, chunks=1)
    on = nlsq_dask.fit(pr.model, x, y, p0=pr.starts[0], tier="chunked")
    off = nlsq_dask.fit(pr.model, x, y, p0=pr.starts[0], tier="chunked",
                        config=WorkflowConfig(subset_passes=False))
    assert on.nfev == off.nfev == on.n_passes == on.equivalent_passes
    assert nist.lre(on.popt, pr.certified).min() >= 6
