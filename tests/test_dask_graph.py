"""Facts about the dask graphs of the CHUNKED and STREAMING tiers.

Laziness (nothing is computed before the first pass), task names and the shape of
the reduction tree, determinism of keys, no recompiles per block length, CHUNKED
reading its source once, progress reporting and the per-iteration history.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import jax.numpy as jnp
import numpy as np
import pytest

import nlsq_dask

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

TOL = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=200)


def decay(x, a, b, c):
    return a * jnp.exp(-b * x) + c


N = 256
P0 = np.array([1.0, 1.0, 0.0])
X = np.linspace(0.0, 4.0, N)
Y = 2.5 * np.exp(-1.3 * X) + 0.4 + 0.01 * np.random.default_rng(1).standard_normal(N)


def counting_scheduler():
    """A scheduler callable for ``dask.config.set(scheduler=...)`` that records each compute."""
    import dask.threaded

    calls = []

    def get(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.threaded.get(dsk, keys, **kwargs)

    return get, calls


class Reads:
    """Counts reads of the blocks of a few dask 'sources'."""

    def __init__(self):
        self.counts = Counter()
        self.lock = threading.Lock()

    def source(self, name, values, chunks):
        def read(block):
            with self.lock:
                self.counts[name] += 1
            return block

        return da.from_array(values, chunks=(chunks,)).map_blocks(
            read, dtype=values.dtype, meta=np.array((), dtype=values.dtype))


def _raise(block):
    raise AssertionError("the data were computed")


# ------------------------------------------------------------------ (a) laziness
def test_profile_and_selection_compute_nothing():
    from nlsq_dask.engines.data import prepare_inputs
    from nlsq_dask.workflow import (DatasetProfile, ResourceSnapshot, WorkflowSelector,
                                    auto_select_workflow)

    meta = np.array((), dtype=float)
    x = da.from_array(X, chunks=64).map_blocks(_raise, dtype=float, meta=meta)
    y = da.from_array(Y, chunks=64).map_blocks(_raise, dtype=float, meta=meta)
    get, calls = counting_scheduler()
    with dask.config.set(scheduler=get):
        inputs = prepare_inputs(x, y, da.ones(N, chunks=64))
        assert inputs.lazy and inputs.n_points == N and inputs.n_partitions == 4
        assert inputs.partition_points == 64
        profile = DatasetProfile(n_points=inputs.n_points, n_params=3, n_inputs=inputs.n_inputs,
                                 itemsize=inputs.itemsize, has_sigma=True,
                                 partition_points=inputs.partition_points,
                                 n_partitions=inputs.n_partitions, lazy=True)
        sel = WorkflowSelector().select(profile, ResourceSnapshot.detect())
        assert "tier" in sel.explain()
        auto_select_workflow(n_points=N, n_params=3)
    assert calls == []


@pytest.mark.parametrize("tier, extra", [("streaming", 0), ("chunked", 1)])
def test_one_compute_per_pass(tier, extra):
    """STREAMING: exactly one compute per pass; CHUNKED: one persist more. Nothing else
    (the selection never computes the data)."""
    get, calls = counting_scheduler()
    with dask.config.set(scheduler=get):
        res = nlsq_dask.fit(decay, da.from_array(X, chunks=64), da.from_array(Y, chunks=64), P0,
                            tier=tier, **TOL)
    assert res.tier.value == tier and res.success
    assert len(calls) == res.nfev + extra
    pass_calls = calls[extra:]
    for keys in pass_calls:
        flat = keys if isinstance(keys, list) else [keys]
        while flat and isinstance(flat[0], list):
            flat = flat[0]
        assert str(flat[0][0] if isinstance(flat[0], tuple) else flat[0]).startswith("nlsq-")


# ------------------------------------------------------- (b) names, tree, determinism
def _runner(n_parts, split_every, func=decay, chunk=4, depth=0):
    """A pass runner over ``n_parts`` partitions of ``chunk`` points, one task a partition
    (``depth=0``) unless told otherwise."""
    from nlsq_dask.engines.dask_engine import PassRunner
    from nlsq_dask.solver import ModelSpec
    from nlsq_dask.solver.problem import Problem

    spec = ModelSpec(func, ("a", "b", "c"), "vector", 1)
    x = da.from_array(np.linspace(0, 1, n_parts * chunk), chunks=chunk)
    y = da.from_array(np.ones(n_parts * chunk), chunks=chunk)
    return PassRunner(Problem(spec), [x, y], n_x=1, split_every=split_every, depth=depth)


def _nlsq_layer(hlg):
    return {k: v for k, v in dict(hlg).items()
            if isinstance(k, tuple) and str(k[0]).startswith("nlsq-")}


@pytest.mark.parametrize("split_every, levels", [(4, 3), (8, 2), (2, 6), (64, 1), (3, 4)])
def test_task_names_and_tree_depth(split_every, levels):
    runner = _runner(64, split_every)
    hlg, final, layer_name = runner.graph(P0)
    assert layer_name.startswith("nlsq-") and final[0] == layer_name  # the top layer
    tasks = _nlsq_layer(hlg)
    stats = [k for k in tasks if k[0].startswith("nlsq-stats-")]
    combine = [k for k in tasks if k[0].startswith("nlsq-combine-")]
    assert len(stats) == 64
    assert set(tasks) == set(stats) | set(combine)
    assert final[0].startswith("nlsq-combine-")
    depths = sorted({k[1] for k in combine})
    assert depths == list(range(levels))
    assert final[1] == levels - 1
    # fan-in never exceeds split_every; every task below the root feeds exactly one parent
    parents = Counter()
    for k in combine:
        deps = [d for d in tasks[k].dependencies if d in tasks]
        assert 1 <= len(deps) <= split_every
        parents.update(deps)
    assert set(parents) == (set(tasks) - {final})
    assert set(parents.values()) == {1}


def test_single_partition_graph():
    hlg, final, layer_name = _runner(1, 8).graph(P0)
    assert final[0].startswith("nlsq-stats-") and final[0] == layer_name
    assert len(_nlsq_layer(hlg)) == 1


def test_keys_are_deterministic():
    a = _runner(64, 8)
    b = _runner(64, 8)
    ka = set(_nlsq_layer(a.graph(P0)[0]))
    assert ka == set(_nlsq_layer(a.graph(P0)[0]))  # same params, same pass: same keys
    assert ka == set(_nlsq_layer(b.graph(P0.copy())[0]))  # another runner of the same problem
    assert ka.isdisjoint(set(_nlsq_layer(a.graph(P0 + 1e-3)[0])))  # other params: new keys
    a.n_passes += 1
    assert ka.isdisjoint(set(_nlsq_layer(a.graph(P0)[0])))  # next pass: new keys


def test_same_tree_gives_bitwise_identical_statistics():
    a, b = _runner(16, 4), _runner(16, 4)
    sa, sb = a(P0), b(P0)
    for u, v in zip(sa, sb):
        assert np.array_equal(np.asarray(u), np.asarray(v))


# ------------------------------------------------------------- (c) no recompiles
def bucket_model(x, a, b, c):  # used only here: its kernel cache starts empty
    return a * jnp.exp(-b * x) + c * x


def test_no_recompile_per_block_length():
    from kernel_counts import compile_count
    from nlsq_dask.engines.partitions import bucket_length, tile_for

    first = (12000, 100, 500, 3000, 4096, 5000, 7000, 8192, 9000, 11000, 1234, 12000)
    second = (12000, 200, 4000, 6000, 8000, 10000, 2500, 12000, 7)
    tile = tile_for(max(first))
    assert tile == tile_for(max(second))
    buckets1 = {bucket_length(n, tile, max(first)) for n in first}
    buckets2 = {bucket_length(n, tile, max(second)) for n in second}
    assert len(set(first)) > len(buckets1) and buckets2 <= buckets1

    def data(chunks):
        n = sum(chunks)
        x = np.linspace(0, 3, n)
        y = 2.0 * np.exp(-0.8 * x) + 0.1 * x
        return da.from_array(x, chunks=(chunks,)), da.from_array(y, chunks=(chunks,))

    before = compile_count()
    res = nlsq_dask.fit(bucket_model, *data(first), P0, tier="streaming", **TOL)
    grew = compile_count() - before
    assert 1 <= grew <= len(buckets1)
    assert res.nfev > 1  # many passes, yet compiles bounded by buckets
    before = compile_count()
    nlsq_dask.fit(bucket_model, *data(second), P0, tier="chunked", **TOL)
    assert compile_count() - before == 0


# ------------------------------------------------------------ (d) reading the source
@pytest.mark.parametrize("tier", ["streaming", "chunked"])
def test_source_reads(tier):
    reads = Reads()
    x = reads.source("x", X, 32)
    y = reads.source("y", Y, 32)
    n_blocks = x.numblocks[0]
    res = nlsq_dask.fit(decay, x, y, P0, tier=tier, **TOL)
    assert res.nfev > 2
    per_block = res.nfev if tier == "streaming" else 1
    assert reads.counts == {"x": per_block * n_blocks, "y": per_block * n_blocks}


# ---------------------------------------------------------- (e) progress and logs
def test_progress_line_and_log_records(capsys, caplog):
    caplog.set_level(logging.INFO, logger="nlsq_dask")
    res = nlsq_dask.fit(decay, da.from_array(X, chunks=64), da.from_array(Y, chunks=64), P0,
                        tier="streaming", progress=True, **TOL)
    err = capsys.readouterr().err
    assert err.count("Mpts/s") == res.nfev
    assert "pass" in err and "cost" in err
    records = [r for r in caplog.records if r.name == "nlsq_dask" and "Mpts/s" in r.getMessage()]
    assert len(records) == res.nfev
    for r in records:
        assert r.levelno == logging.INFO
        msg = r.getMessage()
        assert "pass" in msg and "cost" in msg and "Mpts/s" in msg


def test_no_progress_output_by_default(capsys):
    nlsq_dask.fit(decay, da.from_array(X, chunks=64), da.from_array(Y, chunks=64), P0,
                  tier="chunked", **TOL)
    assert "Mpts/s" not in capsys.readouterr().err


# --------------------------------------------------------------------- (f) history
@pytest.mark.parametrize("tier", ["streaming", "chunked"])
def test_history(tier):
    res = nlsq_dask.fit(decay, da.from_array(X, chunks=64), da.from_array(Y, chunks=64), P0,
                        tier=tier, **TOL)
    h = res.history
    assert res.nit >= 3
    assert len(h) == res.nit + 1
    assert [e["iteration"] for e in h] == list(range(res.nit + 1))
    elapsed = np.array([e["elapsed"] for e in h])
    assert np.all(np.diff(elapsed) > 0)
    cost = np.array([e["cost"] for e in h])
    assert np.all(np.diff(cost) <= 0)
    nfev = [e["nfev"] for e in h]
    assert nfev[0] == 1 and all(b > a for a, b in zip(nfev, nfev[1:])) and nfev[-1] <= res.nfev
    for e in h:
        assert {"iteration", "cost", "params", "nfev", "step_norm", "elapsed"} <= set(e)
        assert len(e["params"]) == 3
    assert h[-1]["cost"] == pytest.approx(res.cost, rel=1e-12)
    np.testing.assert_allclose(h[-1]["params"], res.popt, rtol=1e-12)
    assert h[0]["params"] == P0.tolist()
