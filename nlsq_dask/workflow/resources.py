"""What memory and GPUs this process (and a dask cluster) can use.

Memory is reported in GB meaning GiB (``2**30`` bytes) throughout this layer.

Host memory, within container and job limits, is :mod:`.host_memory`'s
(:func:`detect_host_memory`). GPU memory is read from JAX only when JAX is already
imported (this module never imports it), otherwise from ``nvidia-smi`` when it
is on ``PATH``. A dask ``Client`` is used duck-typed (``client.scheduler_info()``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


from .enums import MemoryTier
from .host_memory import (CgroupMemory, GiB, HostMemory, cgroup_memory, detect_host_memory,
                          get_host_available_memory_gb, get_host_total_memory_gb)

__all__ = [
    "GiB",
    "CgroupMemory",
    "HostMemory",
    "ResourceSnapshot",
    "cgroup_memory",
    "detect_host_memory",
    "get_host_available_memory_gb",
    "get_host_total_memory_gb",
    "get_gpu_free_memory_gb",
    "get_total_available_memory_gb",
    "get_memory_tier",
]

_NVIDIA_SMI_TIMEOUT_S = 3.0
#: host memory counted when psutil cannot read it (NLSQ's fallback, e.g. in some containers)
FALLBACK_HOST_MEMORY_GB = 16.0


def _gpu_free_from_jax() -> list[float] | None:
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    try:
        devices = [d for d in jax.devices() if d.platform == "gpu"]
    except Exception:  # noqa: BLE001 - no backend / init failure
        return None
    free = []
    for dev in devices:
        try:
            stats = dev.memory_stats() or {}
            limit = stats.get("bytes_limit", 0)
            used = stats.get("bytes_in_use", 0)
            free.append(max(limit - used, 0) / GiB)
        except Exception:  # noqa: BLE001
            free.append(0.0)
    return free


def _gpu_free_from_nvidia_smi() -> list[float]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    free = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line:
            try:
                free.append(float(line) / 1024.0)  # MiB -> GiB
            except ValueError:
                continue
    return _filter_visible(free)


def _filter_visible(free: list[float]) -> list[float]:
    """Keep only devices listed in CUDA_VISIBLE_DEVICES (numeric indices)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return free
    idx = []
    for tok in visible.split(","):
        tok = tok.strip()
        if not tok.isdigit():
            return free if tok else []  # UUIDs etc.: cannot map, keep all
        idx.append(int(tok))
    return [free[i] for i in idx if i < len(free)]


def get_gpu_free_memory_gb() -> list[float]:
    """Free memory (GiB) of each visible GPU; ``[]`` when none is visible."""
    free = _gpu_free_from_jax()
    if free:
        return free
    return _gpu_free_from_nvidia_smi()


def get_total_available_memory_gb() -> float:
    """Available host memory plus free GPU memory, in GiB.

    Returns
    -------
    float
        Available host memory within cgroup limits (:func:`detect_host_memory`),
        or ``FALLBACK_HOST_MEMORY_GB`` (16, NLSQ's fallback) when psutil cannot
        read it, plus the free memory of all visible GPUs (JAX's ``memory_stats``
        if JAX is already imported, else ``nvidia-smi``; never imports JAX).
    """
    try:
        host = get_host_available_memory_gb()
    except Exception:  # noqa: BLE001 - psutil failing, as NLSQ's MemoryEstimator: count 16 GiB
        host = FALLBACK_HOST_MEMORY_GB
    return host + sum(get_gpu_free_memory_gb())


def get_memory_tier(memory_gb: float | None = None) -> MemoryTier:
    """Memory tier of ``memory_gb`` (default: :func:`get_total_available_memory_gb`)."""
    if memory_gb is None:
        memory_gb = get_total_available_memory_gb()
    return MemoryTier.from_memory_gb(memory_gb)


@dataclass(frozen=True)
class ResourceSnapshot:
    """Memory and compute visible to a fit at one moment.

    Parameters
    ----------
    host_memory_gb : float
        Local host memory usable (GiB), already capped by any memory limit.
    gpu_memory_gb : float
        Free GPU memory summed over local GPUs (GiB).
    n_gpus : int
        Number of local GPUs.
    worker_memory_gb : tuple of float
        Memory limit of each dask worker (GiB); empty without a client.
    worker_gpus : int
        GPUs advertised by workers as ``GPU`` resources.
    n_threads : int
        Threads available (local cores, or total worker threads).
    host_memory_source : str
        What set ``host_memory_gb``: ``"psutil"``, ``"cgroup"``, ``"distributed"``
        (see :class:`HostMemory`), ``"memory_limit_gb"`` (the configured cap, e.g.
        ``NLSQ_MEMORY_LIMIT_GB``), or ``"given"`` for a snapshot built by hand.
    """

    host_memory_gb: float
    gpu_memory_gb: float = 0.0
    n_gpus: int = 0
    worker_memory_gb: tuple[float, ...] = ()
    worker_gpus: int = 0
    n_threads: int = 1
    host_memory_source: str = "given"

    def __post_init__(self) -> None:
        for name in ("host_memory_gb", "gpu_memory_gb"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{name} must be a non-negative number of GiB; got {v!r}")
            object.__setattr__(self, name, float(v))
        for name, lo in (("n_gpus", 0), ("worker_gpus", 0), ("n_threads", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
        mem = tuple(float(m) for m in self.worker_memory_gb)
        if any(not m >= 0 for m in mem):
            raise ValueError(f"worker_memory_gb must hold non-negative numbers; got {mem!r}")
        object.__setattr__(self, "worker_memory_gb", mem)
        if not isinstance(self.host_memory_source, str):
            raise ValueError(f"host_memory_source must be a string; got {self.host_memory_source!r}")

    @property
    def n_workers(self) -> int:
        """Number of dask workers (0 without a client)."""
        return len(self.worker_memory_gb)

    @property
    def total_worker_memory_gb(self) -> float:
        """Sum of the workers' memory limits (GiB)."""
        return float(sum(self.worker_memory_gb))

    @property
    def gpu_memory_per_device_gb(self) -> float:
        """Free memory of one local GPU (GiB), 0 without GPUs."""
        return self.gpu_memory_gb / self.n_gpus if self.n_gpus else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the snapshot."""
        return {
            "host_memory_gb": self.host_memory_gb,
            "gpu_memory_gb": self.gpu_memory_gb,
            "n_gpus": self.n_gpus,
            "worker_memory_gb": list(self.worker_memory_gb),
            "worker_gpus": self.worker_gpus,
            "n_threads": self.n_threads,
            "host_memory_source": self.host_memory_source,
        }

    @classmethod
    def detect(cls, client: Any = None, memory_limit_gb: float | None = None) -> ResourceSnapshot:
        """Snapshot of this process's resources and, with ``client``, its workers.

        Parameters
        ----------
        client : distributed.Client, optional
            Any object with ``scheduler_info(n_workers=-1)`` returning
            ``{'workers': {addr: {'memory_limit', 'nthreads', 'resources'}}}``.
        memory_limit_gb : float, optional
            Cap on host memory (GiB): the snapshot's host memory is the smaller of
            this and the detected available memory.

        Returns
        -------
        ResourceSnapshot
            Host memory from :func:`detect_host_memory` (cgroup-aware), capped.
        """
        if memory_limit_gb is not None:
            if isinstance(memory_limit_gb, bool) or not isinstance(memory_limit_gb, (int, float)) \
                    or not memory_limit_gb > 0:
                raise ValueError(f"memory_limit_gb must be a positive number; got {memory_limit_gb!r}")
        detected = detect_host_memory()
        host, source = detected.available_gb, detected.source
        if memory_limit_gb is not None and memory_limit_gb < host:
            host, source = float(memory_limit_gb), "memory_limit_gb"
        gpus = get_gpu_free_memory_gb()
        threads = os.cpu_count() or 1
        worker_mem: tuple[float, ...] = ()
        worker_gpus = 0
        if client is not None:
            worker_mem, worker_threads, worker_gpus = _workers_from_client(client)
            if worker_threads:
                threads = worker_threads
        return cls(host_memory_gb=host, gpu_memory_gb=float(sum(gpus)), n_gpus=len(gpus),
                   worker_memory_gb=worker_mem, worker_gpus=worker_gpus, n_threads=threads,
                   host_memory_source=source)


def _scheduler_workers(client: Any) -> dict:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed without n_workers
        info = client.scheduler_info()
    workers = info.get("workers", {}) if isinstance(info, dict) else {}
    return workers if isinstance(workers, dict) else {}


def _workers_from_client(client: Any) -> tuple[tuple[float, ...], int, int]:
    """(memory limit per worker in GiB, total threads, total GPU resources)."""
    total_host = get_host_total_memory_gb()
    mem, threads, gpus = [], 0, 0
    for winfo in _scheduler_workers(client).values():
        limit = winfo.get("memory_limit") or 0
        mem.append(limit / GiB if limit else total_host)  # 0 = no limit set
        threads += int(winfo.get("nthreads") or 0)
        gpus += int((winfo.get("resources") or {}).get("GPU", 0) or 0)
    return tuple(mem), threads, gpus
