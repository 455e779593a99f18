"""The dask cases of ``test_trust.py`` on a ``distributed.LocalCluster`` (worker processes).

The checks of a pass run on the client from the partitions' summaries, and read errors
are raised inside worker tasks: both must reach the caller as the same errors as on
dask's threads. Models are defined here at module level so workers unpickle them by
reference (tests/ is on ``sys.path``, which spawned workers inherit). The ``client``
fixture (a two-process LocalCluster) is in ``conftest.py``.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest
import zarr

import nlsq_dask
from test_trust import between_passes

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

N = 4000
X = np.linspace(0.0, 4.0, N)


def decay(x, a, b):
    return a * jnp.exp(-b * x)


def mean_centred(x, a, b):
    return a * (x - jnp.mean(x)) + b


def _store(path):
    g = zarr.open_group(str(path), mode="w")
    g.create_array("x", data=X, chunks=(500,))
    g.create_array("y", data=np.exp(-0.3 * X), chunks=(500,))
    return str(path)


def _inputs(path):
    return da.from_zarr(path, component="x"), da.from_zarr(path, component="y")


@pytest.mark.slow
@pytest.mark.parametrize("tier", ["chunked", "streaming"])
def test_cluster_no_usable_data_and_bad_sigma(client, tier):
    x = da.from_array(X, chunks=500)
    with pytest.raises(nlsq_dask.InsufficientDataError, match="no usable data point"):
        nlsq_dask.fit(decay, x, da.full(N, np.nan, chunks=500), p0=[1, 1], tier=tier,
                      client=client)
    sigma = da.from_array(np.where(np.arange(N) == 2100, 0.0, 1.0), chunks=500)
    with pytest.raises(ValueError, match=r"sigma must be positive.*partition 4"):
        nlsq_dask.fit(decay, x, da.from_array(np.exp(-0.3 * X), chunks=500), p0=[1, 1],
                      sigma=sigma, tier=tier, client=client)


@pytest.mark.slow
def test_cluster_not_pointwise_model_is_refused(client):
    with pytest.raises(nlsq_dask.NotPointwiseError):
        nlsq_dask.fit(mean_centred, da.from_array(X, chunks=500),
                      da.from_array(2 * X, chunks=500), p0=[1, 1], client=client)


@pytest.mark.slow
def test_cluster_missing_and_corrupt_chunks(client, tmp_path):
    path = _store(tmp_path / "a.zarr")
    os.remove(os.path.join(path, "y", "c", "3"))
    with pytest.raises(nlsq_dask.MissingChunksError, match=r"chunk \(3,\)"):
        nlsq_dask.fit(decay, *_inputs(path), p0=[1, 1], tier="streaming", client=client)
    path = _store(tmp_path / "b.zarr")
    with open(os.path.join(path, "y", "c", "5"), "wb") as f:
        f.write(b"\x00garbage" * 16)
    with pytest.raises(nlsq_dask.DataReadError, match=r"chunk \(5,\).*2,500-2,999"):
        nlsq_dask.fit(decay, *_inputs(path), p0=[1, 1], tier="streaming", client=client)


@pytest.mark.slow
def test_cluster_store_rewritten_between_passes(client, tmp_path, monkeypatch):
    path = _store(tmp_path / "c.zarr")
    between_passes(monkeypatch, lambda: zarr.open_array(path + "/y", mode="r+")
                   .__setitem__(slice(3500, 4000), 0.0))
    with pytest.raises(nlsq_dask.DataChangedError, match=r"partition 7 \(points 3,500-3,999\)"):
        nlsq_dask.fit(decay, *_inputs(path), p0=[1.5, 0.1], tier="streaming", client=client)
