"""Detect the cluster a fit runs on: PBS, SLURM, a dask scheduler, or local GPUs.

Everything is read from an injectable environment mapping and files it names,
so detection is testable without a cluster. ``distributed`` is never imported;
a client is used duck-typed through ``client.scheduler_info()``. JAX is imported
only to count the GPUs of a PBS job that does not say (no ``PBS_NGPUS``), inside
that call, as NLSQ's ``ClusterDetector`` does.
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
        'pbs', 'slurm', 'dask', 'local', or 'unknown' (the default, as in NLSQ).
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
    scheduler: str = "unknown"
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
        Environment to read (default ``os.environ``, read at each call).
    use_nvidia_smi : bool
        Allow probing this machine's GPUs: ``nvidia-smi -L`` for local GPUs, and
        JAX for a PBS job without ``PBS_NGPUS``. False makes detection depend on
        the environment and the files it names only.
    default_gpus_per_node : int, optional
        GPUs per node of a PBS job when neither ``PBS_NGPUS``/``NGPUS`` nor JAX
        gives a count (NLSQ's fallback). None (the default) counts no GPUs then;
        NLSQ's own default is 8.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, use_nvidia_smi: bool = True,
                 default_gpus_per_node: int | None = None):
        if default_gpus_per_node is not None and (
                isinstance(default_gpus_per_node, bool)
                or not isinstance(default_gpus_per_node, int) or default_gpus_per_node < 0):
            raise ValueError("default_gpus_per_node must be an integer >= 0 or None; "
                             f"got {default_gpus_per_node!r}")
        self.environ = os.environ if environ is None else environ
        self.use_nvidia_smi = use_nvidia_smi
        self._default_gpus_per_node = default_gpus_per_node

    def detect(self, client: Any = None) -> ClusterInfo | None:
        """First match of: a given client, PBS, SLURM, a dask address, local GPUs.

        Parameters
        ----------
        client : distributed.Client, optional
            Describe this client's cluster instead of probing the environment.

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

    def is_pbs_environment(self) -> bool:
        """Whether this process runs in a PBS job.

        Returns
        -------
        bool
            True if ``PBS_NODEFILE`` is set (NLSQ's test).
        """
        return "PBS_NODEFILE" in self.environ

    def _detect_interconnect(self) -> str | None:
        """'infiniband' if ``/sys/class/infiniband`` exists or Open MPI allows IB, else None."""
        if os.path.isdir("/sys/class/infiniband"):
            return "infiniband"
        if self.environ.get("OMPI_MCA_btl_openib_allow_ib"):  # noqa: SIM112 - Open MPI's name
            return "infiniband"
        return None

    def _detect_gpus_per_node(self) -> int:
        """GPUs (non-CPU devices) JAX sees on this node; 0 if none or JAX fails.

        JAX is imported here, only when called, and not at all when
        ``use_nvidia_smi`` is False.
        """
        if not self.use_nvidia_smi:
            return 0
        try:
            import jax

            return sum(1 for d in jax.devices() if getattr(d, "platform", "cpu") != "cpu")
        except Exception:  # noqa: BLE001 - no JAX, no backend: no GPUs counted (as NLSQ)
            return 0

    def _read_nodefile(self, nodefile: str) -> list[str] | None:
        """Distinct hosts of a PBS node file in order; None if it is missing or lists none."""
        try:
            with open(nodefile, encoding="utf-8") as fh:
                hosts = [line.strip() for line in fh]
        except OSError:
            return None
        hosts = list(dict.fromkeys(h for h in hosts if h))
        return hosts or None

    def detect_pbs(self) -> ClusterInfo | None:
        """PBS Pro/Torque job from ``PBS_NODEFILE`` (and ``PBS_JOBID``).

        The node file has one line per slot; hosts are de-duplicated in order.
        GPUs per node come from ``PBS_NGPUS`` (or ``NGPUS``), else from JAX, else
        ``default_gpus_per_node``.

        Returns
        -------
        ClusterInfo or None
            None (as NLSQ) without ``PBS_NODEFILE``, or when it is missing or empty.
        """
        env = self.environ
        nodefile = env.get("PBS_NODEFILE")
        job_id = env.get("PBS_JOBID") or None
        nodes = self._read_nodefile(nodefile) if nodefile else None
        if nodes is None:
            return None
        ngpus = env.get("PBS_NGPUS") or env.get("NGPUS")
        gpn = (_gpu_count(ngpus) if ngpus
               else self._detect_gpus_per_node() or self._default_gpus_per_node or 0)
        count = max(len(nodes), 1)
        return ClusterInfo(node_count=count, gpus_per_node=gpn, total_gpus=gpn * count,
                           node_list=nodes, scheduler="pbs", job_id=job_id,
                           interconnect=self._detect_interconnect())

    def detect_slurm(self) -> ClusterInfo | None:
        """SLURM job from ``SLURM_JOB_ID`` and ``SLURM_JOB_NODELIST``.

        Returns
        -------
        ClusterInfo or None
            None outside a SLURM job.
        """
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
                           interconnect=self._detect_interconnect())

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
