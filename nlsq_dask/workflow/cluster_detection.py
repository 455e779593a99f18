"""Detect the cluster a fit runs on: PBS, SLURM, a dask scheduler, or local GPUs.

Everything is read from an injectable environment mapping and files it names,
so detection is testable without a cluster. ``distributed`` is never imported;
a client is used duck-typed through ``client.scheduler_info()``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

__all__ = ["ClusterInfo", "ClusterDetector", "expand_nodelist"]


@dataclass
class ClusterInfo:
    """Description of the nodes and GPUs of a job.

    Parameters
    ----------
    node_count : int
        Number of distinct nodes.
    gpus_per_node : int
        GPUs per node (0 if none).
    total_gpus : int
        GPUs in all.
    node_list : list of str
        Host names, in order of first appearance.
    scheduler : str
        'pbs', 'slurm', 'dask' or 'local'.
    job_id : str, optional
        Batch job id.
    interconnect : str, optional
        Interconnect, e.g. 'infiniband', when known.
    address : str, optional
        Dask scheduler address, when known.
    """

    node_count: int = 1
    gpus_per_node: int = 0
    total_gpus: int = 0
    node_list: list[str] = field(default_factory=list)
    scheduler: str = "local"
    job_id: str | None = None
    interconnect: str | None = None
    address: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClusterInfo:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = [f.name for f in fields(cls)]
        for key in d:
            if key not in names:
                raise ValueError(f"unknown ClusterInfo key {key!r}; valid keys are: {', '.join(names)}")
        kw = dict(d)
        if "node_list" in kw:
            kw["node_list"] = list(kw["node_list"])
        return cls(**kw)


_RANGE_RE = re.compile(r"\[([^\[\]]*)\]")


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"nodelist {text!r} has an unmatched ']'")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"nodelist {text!r} has an unmatched '['")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _expand_range(body: str, text: str) -> list[str]:
    out = []
    for item in body.split(","):
        item = item.strip()
        if "-" in item:
            lo, hi = item.split("-", 1)
            if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
                raise ValueError(f"nodelist {text!r} has a bad range {item!r}")
            width = len(lo)
            out.extend(str(i).zfill(width) for i in range(int(lo), int(hi) + 1))
        elif item.isdigit():
            out.append(item)
        else:
            raise ValueError(f"nodelist {text!r} has a bad range item {item!r}")
    return out


def expand_nodelist(text: str) -> list[str]:
    """Expand a SLURM-style host list such as ``gpu[01-04,07]`` or ``a[1-2],b3``.

    Zero padding is kept (``n[08-10]`` gives ``n08, n09, n10``); several
    bracket groups in one name expand as a product.

    Raises
    ------
    ValueError
        On unbalanced brackets or malformed ranges.
    """
    hosts: list[str] = []
    for part in _split_top_level(text.strip()):
        expansions = [""]
        pos = 0
        for m in _RANGE_RE.finditer(part):
            prefix = part[pos:m.start()]
            expansions = [e + prefix + n for e in expansions for n in _expand_range(m.group(1), text)]
            pos = m.end()
        hosts.extend(e + part[pos:] for e in expansions)
    return hosts


def _gpu_count(spec: str | None) -> int:
    """Parse GPU counts like ``4``, ``gpu:4``, ``a100:2``, ``gpu:a100:2(x2)``."""
    if not spec:
        return 0
    first = spec.split(",")[0]
    first = re.sub(r"\(.*\)$", "", first).strip()
    last = first.split(":")[-1]
    return int(last) if last.isdigit() else 0


class ClusterDetector:
    """Detect PBS/SLURM jobs, dask schedulers and local GPUs.

    Parameters
    ----------
    environ : mapping, optional
        Environment to read (default ``os.environ``).
    use_nvidia_smi : bool
        Allow running ``nvidia-smi -L`` to count local GPUs.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, use_nvidia_smi: bool = True):
        self.environ = os.environ if environ is None else environ
        self.use_nvidia_smi = use_nvidia_smi

    def detect(self, client: Any = None) -> ClusterInfo | None:
        """First match of: a given client, PBS, SLURM, a dask address, local GPUs.

        Returns
        -------
        ClusterInfo or None
            None on a plain CPU machine outside any batch job or cluster.
        """
        if client is not None:
            return self.detect_dask(client)
        for probe in (self.detect_pbs, self.detect_slurm, self.detect_dask, self.detect_local_gpus):
            info = probe()
            if info is not None:
                return info
        return None

    def _interconnect(self) -> str | None:
        return "infiniband" if os.path.isdir("/sys/class/infiniband") else None

    def detect_pbs(self) -> ClusterInfo | None:
        """PBS Pro/Torque job from ``PBS_JOBID`` and ``PBS_NODEFILE``.

        The node file has one line per slot; hosts are de-duplicated in order.
        GPUs per node come from ``PBS_NGPUS`` (or ``NGPUS``).
        """
        env = self.environ
        nodefile = env.get("PBS_NODEFILE")
        job_id = env.get("PBS_JOBID")
        if not nodefile and not job_id:
            return None
        nodes: list[str] = []
        if nodefile:
            try:
                with open(nodefile, encoding="utf-8") as fh:
                    for line in fh:
                        host = line.strip()
                        if host and host not in nodes:
                            nodes.append(host)
            except OSError:
                nodes = []
        gpn = _gpu_count(env.get("PBS_NGPUS") or env.get("NGPUS"))
        count = max(len(nodes), 1)
        return ClusterInfo(node_count=count, gpus_per_node=gpn, total_gpus=gpn * count,
                           node_list=nodes, scheduler="pbs", job_id=job_id,
                           interconnect=self._interconnect())

    def detect_slurm(self) -> ClusterInfo | None:
        """SLURM job from ``SLURM_JOB_ID`` and ``SLURM_JOB_NODELIST``."""
        env = self.environ
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not job_id and not nodelist:
            return None
        nodes = expand_nodelist(nodelist) if nodelist else []
        n_env = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
        count = len(nodes) or (int(n_env) if n_env and n_env.isdigit() else 1)
        gpn = _gpu_count(env.get("SLURM_GPUS_ON_NODE")) or _gpu_count(env.get("SLURM_GPUS_PER_NODE"))
        return ClusterInfo(node_count=count, gpus_per_node=gpn, total_gpus=gpn * count,
                           node_list=nodes, scheduler="slurm", job_id=job_id,
                           interconnect=self._interconnect())

    def detect_dask(self, client: Any = None) -> ClusterInfo | None:
        """A dask cluster from ``client`` or ``DASK_SCHEDULER_ADDRESS``.

        With a client, nodes are the distinct worker hosts and GPUs the
        workers' ``GPU`` resources.
        """
        address = self.environ.get("DASK_SCHEDULER_ADDRESS") or None
        if client is None:
            if not address:
                return None
            return ClusterInfo(node_count=1, scheduler="dask", address=address)
        info = client.scheduler_info(n_workers=-1) if _accepts_n_workers(client) \
            else client.scheduler_info()
        hosts: list[str] = []
        gpus = 0
        for addr, w in (info.get("workers") or {}).items():
            host = w.get("host") or _host_of(addr)
            if host not in hosts:
                hosts.append(host)
            gpus += int((w.get("resources") or {}).get("GPU", 0) or 0)
        count = max(len(hosts), 1)
        return ClusterInfo(node_count=count, gpus_per_node=gpus // count, total_gpus=gpus,
                           node_list=hosts, scheduler="dask",
                           address=info.get("address") or address)

    def detect_local_gpus(self) -> ClusterInfo | None:
        """Local GPUs from ``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi -L``."""
        visible = self.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            ids = [t for t in (s.strip() for s in visible.split(",")) if t and t != "-1"]
            n = len(ids)
        else:
            n = self._nvidia_smi_count()
        if n == 0:
            return None
        return ClusterInfo(node_count=1, gpus_per_node=n, total_gpus=n,
                           node_list=[socket.gethostname()], scheduler="local")

    def _nvidia_smi_count(self) -> int:
        if not self.use_nvidia_smi:
            return 0
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return 0
        try:
            proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=3.0,
                                  check=False)
        except (OSError, subprocess.SubprocessError):
            return 0
        if proc.returncode != 0:
            return 0
        return sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU"))


def _accepts_n_workers(client: Any) -> bool:
    import inspect

    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def _host_of(address: str) -> str:
    addr = address.split("://", 1)[-1]
    return addr.rsplit(":", 1)[0] if ":" in addr else addr
