"""Host memory within the limits of a container, a SLURM job or a Kubernetes pod.

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
module is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

GiB = float(2**30)
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as LONG_MAX rounded down to a page
_CGROUP_UNLIMITED = 2**60
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
