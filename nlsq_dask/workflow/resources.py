"""What memory and GPUs this process (and a dask cluster) can use.

Memory is reported in GB meaning GiB (``2**30`` bytes) throughout this layer.

Host memory (:func:`detect_host_memory`) honours the limits of a container, a
SLURM job or a Kubernetes pod, not only the machine's RAM:

* total: the least of ``psutil.virtual_memory().total``,
  ``distributed.system.MEMORY_LIMIT`` (psutil's total, the cgroup v1/v2 limits
  at ``/sys/fs/cgroup`` and ``RLIMIT_RSS``; what dask's ``memory_limit="auto"``
  shares out) and the limit of this process's own cgroups (:func:`cgroup_memory`,
  which also finds the cgroup of a SLURM job that is not the mount's root);
* available: the least of psutil's available memory (what the machine can give)
  and, for each cgroup with a limit, that limit less the cgroup's working set
  (usage less inactive file cache, as ``docker stats`` and the kubelet count it):
  a limit bounds the whole cgroup, every process in it, so what this process can
  still take is what the cgroup has left. A limit only ``distributed`` found (an
  RSS rlimit, a soft limit) is lessened by this process tree's resident memory.

``distributed`` is imported inside :func:`detect_host_memory`, never when this
module is imported. GPU memory is read from JAX only when JAX is already
imported (this module never imports it), otherwise from ``nvidia-smi`` when it
is on ``PATH``. A dask ``Client`` is used duck-typed (``client.scheduler_info()``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .enums import MemoryTier

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

GiB = float(2**30)
_NVIDIA_SMI_TIMEOUT_S = 3.0
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as LONG_MAX rounded down to a page
_CGROUP_UNLIMITED = 2**60
#: host memory counted when psutil cannot read it (NLSQ's fallback, e.g. in some containers)
FALLBACK_HOST_MEMORY_GB = 16.0
# (mount below CGROUP_ROOT, limit files, usage file, memory.stat keys of inactive file cache)
_CGROUP_V2 = ("", ("memory.max", "memory.high"), "memory.current", ("inactive_file",))
_CGROUP_V1 = ("memory", ("memory.limit_in_bytes",), "memory.usage_in_bytes",
              ("total_inactive_file", "inactive_file"))


@dataclass(frozen=True)
class CgroupMemory:
    """The memory limit of this process's cgroups and what they have left.

    Parameters
    ----------
    limit : int
        The least limit (bytes) of this process's cgroup and its ancestors.
    available : int or None
        The least, over the limited cgroups, of limit minus working set (usage
        less inactive file cache), in bytes; None when no usage could be read.
    path : str
        The file of the least limit, e.g. ``/sys/fs/cgroup/memory.max``.
    """

    limit: int
    available: int | None
    path: str


def _read_cgroup_int(path: Path) -> int | None:
    """A positive byte count from a cgroup file; None for ``max``, unlimited or unreadable."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):  # missing, "max", garbage
        return None
    return value if 0 < value < _CGROUP_UNLIMITED else None


def _read_cgroup_stat(path: Path, keys: tuple[str, ...]) -> int:
    """The first of ``keys`` found in a ``memory.stat`` file (bytes), else 0."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    stat = dict(line.split(None, 1) for line in lines if len(line.split()) == 2)
    for key in keys:
        if key in stat and stat[key].strip().isdigit():
            return int(stat[key])
    return 0


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """``{"v2": path, "v1": path}`` of this process's memory cgroups (``/proc/self/cgroup``)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return {}
    own: dict[str, str] = {}
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            own.setdefault("v2", path)
        elif "memory" in controllers.split(","):
            own["v1"] = path
    return own


def cgroup_memory(root: str | os.PathLike | None = None,
                  proc_cgroup: str | os.PathLike | None = None) -> CgroupMemory | None:
    """The memory limit that cgroups (v2 or v1) put on this process, if any.

    Reads this process's cgroup from ``proc_cgroup`` and, below ``root``, the
    limit of that cgroup and of each of its ancestors (a parent's limit binds its
    children): v2 ``memory.max`` and ``memory.high``, ``memory.current`` and
    ``memory.stat``'s ``inactive_file``; v1 ``memory/.../memory.limit_in_bytes``,
    ``memory.usage_in_bytes`` and ``total_inactive_file``. A cgroup path that is
    not there (a container that sees its own cgroup as the root) leaves the root.

    Parameters
    ----------
    root : path_like, optional
        Where the cgroup filesystems are mounted (default :data:`CGROUP_ROOT`,
        ``/sys/fs/cgroup``).
    proc_cgroup : path_like, optional
        This process's cgroup list (default :data:`PROC_SELF_CGROUP`,
        ``/proc/self/cgroup``).

    Returns
    -------
    CgroupMemory or None
        None when no cgroup sets a limit (or this is not Linux).
    """
    root = Path(CGROUP_ROOT if root is None else root)
    own = _own_cgroups(Path(PROC_SELF_CGROUP if proc_cgroup is None else proc_cgroup))
    found: list[tuple[int, int | None, str]] = []
    for version, (mount, limit_files, usage_file, inactive_keys) in (("v2", _CGROUP_V2),
                                                                     ("v1", _CGROUP_V1)):
        base = root / mount
        parts = [p for p in own.get(version, "/").split("/") if p]
        for depth in range(len(parts), -1, -1):
            where = base.joinpath(*parts[:depth])
            limits = [(v, where / name) for name in limit_files
                      if (v := _read_cgroup_int(where / name)) is not None]
            if not limits:
                continue
            limit, path = min(limits)
            try:
                usage = int((where / usage_file).read_text().strip())
            except (OSError, ValueError):
                found.append((limit, None, str(path)))
                continue
            working = max(usage - _read_cgroup_stat(where / "memory.stat", inactive_keys), 0)
            found.append((limit, max(limit - working, 0), str(path)))
    if not found:
        return None
    limit, _, path = min(found, key=lambda f: f[0])
    known = [f[1] for f in found if f[1] is not None]
    return CgroupMemory(limit=limit, available=min(known) if known else None, path=path)


@dataclass(frozen=True)
class HostMemory:
    """This host's memory as a fit may use it, and where the figures came from.

    Parameters
    ----------
    total_gb, available_gb : float
        Total and available memory (GiB), within any cgroup or RSS limit.
    source : str
        What bounds ``available_gb``: ``"psutil"`` (the machine), ``"cgroup"``
        (a cgroup's limit less its working set) or ``"distributed"`` (a limit only
        ``distributed.system.MEMORY_LIMIT`` found, less this process tree's RSS).
    limit : str or None
        Where the limit below the machine's RAM came from (a cgroup file, or
        ``distributed.system.MEMORY_LIMIT``); None when there is none.
    machine_total_gb, machine_available_gb : float
        ``psutil.virtual_memory()``'s total and available (GiB).
    """

    total_gb: float
    available_gb: float
    source: str
    limit: str | None
    machine_total_gb: float
    machine_available_gb: float

    def describe(self) -> str:
        """A one-line account, e.g. ``'3.1 GiB available of 4.0 GiB (cgroup ...)'``."""
        text = f"{self.available_gb:.1f} GiB available of {self.total_gb:.1f} GiB ({self.source}"
        if self.limit is not None:
            text += (f"; limit {self.limit}; the machine: {self.machine_available_gb:.1f} "
                     f"of {self.machine_total_gb:.1f} GiB")
        return text + ")"


def _distributed_memory_limit(default: int) -> int:
    """``distributed.system.MEMORY_LIMIT`` (bytes), or ``default`` without distributed."""
    try:
        from distributed import system
    except ImportError:  # pragma: no cover - distributed is a dependency
        return default
    return int(system.MEMORY_LIMIT)


def _process_tree_rss() -> int:
    """Resident memory of this process and its children (bytes)."""
    me = psutil.Process()
    total = 0
    for proc in (me, *me.children(recursive=True)):
        try:
            total += proc.memory_info().rss
        except psutil.Error:  # a child that ended meanwhile
            continue
    return total


def detect_host_memory() -> HostMemory:
    """This host's total and available memory within cgroup and RSS limits.

    See the module's description for how the figures are combined.
    Imports ``distributed`` (for ``distributed.system.MEMORY_LIMIT``).

    Returns
    -------
    HostMemory
    """
    vm = psutil.virtual_memory()
    total, available, source, limit = vm.total, vm.available, "psutil", None
    cgroup = cgroup_memory()
    if cgroup is not None and cgroup.limit < total:
        total, limit = cgroup.limit, cgroup.path
        left = cgroup.available
        if left is None:
            left = cgroup.limit - _process_tree_rss()
        if left < available:
            available, source = left, "cgroup"
    dask_limit = _distributed_memory_limit(vm.total)
    if dask_limit < total:
        total, limit = dask_limit, "distributed.system.MEMORY_LIMIT"
        left = dask_limit - _process_tree_rss()
        if left < available:
            available, source = left, "distributed"
    available = min(max(available, 0), total)
    return HostMemory(total_gb=total / GiB, available_gb=available / GiB, source=source,
                      limit=limit, machine_total_gb=vm.total / GiB,
                      machine_available_gb=vm.available / GiB)


def get_host_available_memory_gb() -> float:
    """Available host memory in GiB, within cgroup limits (:func:`detect_host_memory`)."""
    return detect_host_memory().available_gb


def get_host_total_memory_gb() -> float:
    """Total host memory in GiB, within cgroup and RSS limits (:func:`detect_host_memory`)."""
    return detect_host_memory().total_gb


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
