"""The dask tiers on a real distributed cluster (LocalCluster, worker processes).

Models come from ``nist`` (tests/ is on ``sys.path``, which spawned workers inherit),
so worker processes can unpickle them by reference.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import nist
import nlsq_dask

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

TOL = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=200)
TIMEOUT = 60


@pytest.fixture(scope="module")
def problem():
    p = nist.load("Chwirut2")
    ref = nlsq_dask.fit(p.model, p.x, p.y, p.starts[0], tier="standard", **TOL)
    return p, ref


def _xy(p):
    chunks = (10, 7, 20, 17)
    return da.from_array(p.x, chunks=(chunks,)), da.from_array(p.y, chunks=(chunks,))


def _assert_same(res, ref, tier):
    assert res.tier.value == tier
    assert res.success, res.message
    np.testing.assert_allclose(res.popt, ref.popt, rtol=1e-10, atol=0)
    np.testing.assert_allclose(res.pcov, ref.pcov, rtol=1e-8, atol=1e-8 * np.abs(ref.pcov).max())
    assert res.n_points_used == ref.n_points_used


@pytest.mark.parametrize("tier", ["chunked", "streaming"])
def test_active_client(client, problem, tier):
    p, ref = problem
    x, y = _xy(p)
    with client.as_current(), distributed.get_task_stream(client) as ts:
        res = nlsq_dask.fit(p.model, x, y, p.starts[0], tier=tier, **TOL)
    _assert_same(res, ref, tier)
    # the passes ran on the cluster's workers
    keys = [t["key"] for t in ts.data]
    names = {str(k[0] if isinstance(k, tuple) else k) for k in keys}
    assert any(n.startswith("nlsq-stats-") for n in names)
    assert any(n.startswith("nlsq-combine-") for n in names)
    workers = {t["worker"] for t in ts.data}
    assert workers <= set(client.scheduler_info()["workers"])


@pytest.mark.parametrize("tier", ["chunked", "streaming"])
def test_explicit_client(client, problem, tier):
    p, ref = problem
    x, y = _xy(p)
    assert distributed.client._get_global_client() is None  # no active client here
    res = nlsq_dask.fit(p.model, x, y, p.starts[0], tier=tier, client=client, **TOL)
    _assert_same(res, ref, tier)
    # and the threaded scheduler gives the same numbers
    local = nlsq_dask.fit(p.model, x, y, p.starts[0], tier=tier, **TOL)
    np.testing.assert_array_equal(local.popt, res.popt)


def test_selector_sees_the_workers(client, problem):
    p, _ = problem
    x, y = _xy(p)
    res = nlsq_dask.fit(p.model, x, y, p.starts[0], tier="chunked", client=client, **TOL)
    assert res.selection.resources.n_workers == 2


def test_fit_never_starts_a_cluster(monkeypatch, problem):
    p, ref = problem

    def refuse(*args, **kwargs):
        raise AssertionError("fit started a cluster or client")

    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)
    monkeypatch.setattr(distributed.Client, "__init__", refuse)
    assert distributed.client._get_global_client() is None
    x, y = _xy(p)
    for tier in ("chunked", "streaming"):
        res = nlsq_dask.fit(p.model, x, y, p.starts[0], tier=tier, **TOL)
        _assert_same(res, ref, tier)
    # and the automatic selection does not start one either
    nlsq_dask.fit(p.model, x, y, p.starts[0], **TOL)


# ---------------------------------------------------------------- out of core
N_BIG = 28_000_000          # x and y float64: 448 MB = 427 MiB
CHUNK = 250_000           # 2 MB per array chunk: even 15 partitions in flight stay below the 60 MiB spill target
WORKER_LIMIT = "100MiB"     # 2 workers: 200 MiB in all, < half the data


@contextlib.contextmanager
def cpu_load(n_processes: int = 2):
    """Processes that keep every core busy while the block runs: tasks then queue up
    behind slow workers, as on a loaded machine."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(n_processes)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def test_streaming_zarr_far_larger_than_worker_memory(tmp_path):
    """STREAMING over a zarr store ~2x the workers' total memory limit, with every core
    also kept busy by other processes: completes, and no worker ever spills data to disk
    (a pass task reads its own partition, so a worker holds about one partition per
    thread however far the queued tasks run ahead; partitions are read, reduced and
    dropped).

    The process-memory thresholds (spill/pause/terminate) are turned off: a worker that
    has imported and compiled JAX already has a resident size of ~300 MiB before any
    data arrive, which is not data the fit keeps. Managed-memory spilling (``target``)
    stays on at its default, so any partition (or persisted copy) held by a worker
    beyond 60 MiB would be spilled and counted.
    """
    zarr = pytest.importorskip("zarr")  # noqa: F841
    import dask

    x = da.linspace(0.0, 5.0, N_BIG, chunks=CHUNK)
    noise = da.random.default_rng(0).standard_normal(N_BIG, chunks=CHUNK)
    y = 3.0 * (1 - da.exp(-0.7 * x)) + 0.01 * noise
    da.to_zarr(x, str(tmp_path / "x.zarr"))
    da.to_zarr(y, str(tmp_path / "y.zarr"))
    xz, yz = da.from_zarr(str(tmp_path / "x.zarr")), da.from_zarr(str(tmp_path / "y.zarr"))
    data_bytes = xz.nbytes + yz.nbytes
    limit = dask.utils.parse_bytes(WORKER_LIMIT)
    assert data_bytes >= 2 * (2 * limit)

    model = nist.MODELS["Misra1a"]  # b1 * (1 - exp(-b2 x))
    memory = {"distributed.worker.memory.spill": False,
              "distributed.worker.memory.pause": False,
              "distributed.worker.memory.terminate": False}
    with dask.config.set(memory), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", memory_limit=WORKER_LIMIT) as cl, \
                distributed.Client(cl, set_as_default=False, timeout=TIMEOUT) as c:
            c.wait_for_workers(2, timeout=TIMEOUT)
            with cpu_load():
                res = nlsq_dask.fit(model, xz, yz, [2.5, 0.6], client=c, tier="streaming",
                                    ftol=1e-8, xtol=1e-8, gtol=1e-8)
            spills = c.run(lambda dask_worker: (
                tuple(dask_worker.data.spilled_total),
                dask_worker.data.cumulative_metrics.get(("disk-write", "count"), 0),
                len(dask_worker.data.slow)))
            workers = c.scheduler_info()["workers"]
    assert res.tier.value == "streaming"
    assert res.n_points_used == N_BIG
    np.testing.assert_allclose(res.popt, [3.0, 0.7], rtol=1e-3)
    assert all(w["memory_limit"] == limit for w in workers.values())
    for addr, (spilled, writes, n_slow) in spills.items():
        assert spilled == (0, 0), addr
        assert writes == 0, addr
        assert n_slow == 0, addr
