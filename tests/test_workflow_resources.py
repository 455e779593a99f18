"""Memory and resource detection (psutil, nvidia-smi, duck-typed dask client)."""

import sys

import psutil
import pytest

from nlsq_dask.workflow import (
    MemoryTier,
    ResourceSnapshot,
    get_memory_tier,
    get_total_available_memory_gb,
)
from nlsq_dask.workflow import resources as res

GiB = 2**30


class FakeClient:
    def __init__(self, workers):
        self._workers = workers

    def scheduler_info(self, n_workers=-1):
        assert n_workers == -1
        return {"workers": self._workers}


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(res, "get_gpu_free_memory_gb", lambda: [])


def test_total_memory_is_host_without_gpu(no_gpu):
    total = get_total_available_memory_gb()
    assert 0 < total <= psutil.virtual_memory().total / GiB
    assert isinstance(get_memory_tier(), MemoryTier)
    assert get_memory_tier(100.0) is MemoryTier.HIGH


def test_total_memory_adds_gpu(monkeypatch):
    monkeypatch.setattr(res, "get_host_available_memory_gb", lambda: 10.0)
    monkeypatch.setattr(res, "get_gpu_free_memory_gb", lambda: [40.0, 39.0])
    assert get_total_available_memory_gb() == 89.0


def test_nvidia_smi_parsing(monkeypatch, tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nprintf '81000\\n40960\\n'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert res.get_gpu_free_memory_gb() == pytest.approx([81000 / 1024, 40.0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert res.get_gpu_free_memory_gb() == pytest.approx([40.0])


def test_no_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert res.get_gpu_free_memory_gb() == []


def test_jax_memory_stats_used_when_imported(monkeypatch):
    class Dev:
        platform = "gpu"

        def memory_stats(self):
            return {"bytes_limit": 80 * GiB, "bytes_in_use": 16 * GiB}

    class FakeJax:
        @staticmethod
        def devices():
            return [Dev(), Dev()]

    monkeypatch.setitem(sys.modules, "jax", FakeJax)
    assert res.get_gpu_free_memory_gb() == [64.0, 64.0]


def test_detect_local(no_gpu):
    snap = ResourceSnapshot.detect(memory_limit_gb=0.5)
    assert snap.host_memory_gb <= 0.5 and snap.n_gpus == 0 and snap.n_workers == 0
    assert snap.n_threads >= 1


def test_detect_with_client(no_gpu):
    client = FakeClient({
        "tcp://a:1": {"memory_limit": 256 * GiB, "nthreads": 32, "resources": {"GPU": 2}},
        "tcp://b:1": {"memory_limit": 128 * GiB, "nthreads": 16, "resources": {}},
        "tcp://c:1": {"memory_limit": 0, "nthreads": 8},
    })
    snap = ResourceSnapshot.detect(client=client)
    assert snap.worker_memory_gb[:2] == (256.0, 128.0)
    assert snap.worker_memory_gb[2] == pytest.approx(psutil.virtual_memory().total / GiB)
    assert snap.n_threads == 56 and snap.worker_gpus == 2 and snap.n_workers == 3
    assert snap.to_dict()["worker_memory_gb"][0] == 256.0


@pytest.mark.parametrize("kw, match", [
    ({"host_memory_gb": -1}, "host_memory_gb must be a non-negative"),
    ({"host_memory_gb": 8, "n_threads": 0}, "n_threads must be an integer >= 1"),
    ({"host_memory_gb": 8, "worker_memory_gb": (1, -2)}, "worker_memory_gb must hold"),
])
def test_snapshot_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        ResourceSnapshot(**kw)


def test_detect_bad_limit(no_gpu):
    with pytest.raises(ValueError, match="memory_limit_gb must be a positive number; got -3"):
        ResourceSnapshot.detect(memory_limit_gb=-3)
