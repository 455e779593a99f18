"""Dask clusters for fits: local CPU, GPU-pinned workers, an address, PBS/SLURM jobs.

``fit`` never starts a cluster; these helpers are what a script or the
``nlsq-dask fit`` command uses before calling it. :func:`from_config` turns the
``cluster`` section of ``nlsq.yaml`` into a running cluster, taking defaults from
the detected PBS/SLURM allocation (:class:`~nlsq_dask.workflow.ClusterDetector`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

from .workflow import ClusterDetector, ClusterInfo

GPU_ENV = {
    # JAX would otherwise reserve 75% of the card when the worker first uses it.
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
}

#: the variable distributed's nannies set by default (``distributed.nanny.pre-spawn-environ``)
#: that the clusters started here leave out, see :func:`worker_environ`
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"


@contextmanager
def worker_environ():
    """A context in which nannies started here spawn workers without ``MALLOC_TRIM_THRESHOLD_``.

    distributed sets ``MALLOC_TRIM_THRESHOLD_=65536`` in each worker so that glibc returns
    freed memory to the system at once. Setting it also turns off glibc's adaptive
    ``mmap`` threshold, so every buffer over 128 KiB — each partition a pass reads, its
    decompressed chunk, the kernel's inputs — is a fresh ``mmap`` whose pages the kernel
    faults in and zeroes, and freed at once: a pass task then spends about as long in the
    system as in its own work, nearly doubling a pass (see the comparison page of the
    docs). Without it a worker keeps about a partition's buffers for reuse. Everything
    else in ``pre-spawn-environ`` (``OMP_NUM_THREADS=1``, ...) is kept. Only nannies
    created inside the context are affected (not workers a cluster adds later).

    A nanny also writes its variables into this process's ``os.environ`` before it
    spawns (so an earlier cluster leaves ``MALLOC_TRIM_THRESHOLD_`` there for every later
    child): the variable is taken out of ``os.environ`` inside the context and put back
    after it. This process's own allocator read it at start-up and is not affected.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.pop(MALLOC_TRIM, None)
    inherited = os.environ.pop(MALLOC_TRIM, None)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            yield
    finally:
        if inherited is not None:
            os.environ[MALLOC_TRIM] = inherited


@dataclass
class ClusterHandle:
    """A Client and the cluster it was started with (None for an address).

    Use as a context manager to close both.
    """

    client: object
    cluster: object = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


DASHBOARD_INSTALL = 'pip install "nlsq-dask[dashboard]"'


def dashboard_missing() -> str | None:
    """Why dask's dashboard cannot be served here, or None when it can.

    ``distributed`` serves its dashboard with bokeh, which ``pip install nlsq-dask``
    does not bring: without it (or with a bokeh older than ``distributed``
    requires) a cluster starts without the dashboard and its link answers only with
    "Dask needs bokeh>=... for the dashboard". bokeh itself is not imported.

    Returns
    -------
    str or None
        A message naming ``pip install "nlsq-dask[dashboard]"``, or None when a
        suitable bokeh is installed.
    """
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = importlib.util.find_spec("bokeh") is not None
    except (ImportError, ValueError):  # a broken or blocked (sys.modules entry None) bokeh
        found = False
    if not found:
        return f"dask's dashboard needs bokeh, which is not installed: {DASHBOARD_INSTALL}"
    from distributed import versions

    requirement = getattr(versions, "BOKEH_REQUIREMENT", None)
    try:
        have = version("bokeh")
    except PackageNotFoundError:  # importable without metadata: let distributed judge
        return None
    if requirement is not None and not requirement.specifier.contains(have, prereleases=True):
        return f"dask's dashboard needs {requirement}, not bokeh {have}: {DASHBOARD_INSTALL}"
    return None


def local_cluster(n_workers: int | None = None, threads_per_worker: int = 1,
                  memory_limit="auto", processes: bool = True, **kwargs):
    """A CPU ``distributed.LocalCluster`` (one single-threaded worker per core by default).

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: one per core).
    threads_per_worker : int
        Threads of each worker.
    memory_limit : str or int
        Each worker's limit; ``"auto"`` splits ``distributed.system.MEMORY_LIMIT``
        (host memory, cgroup and RSS limits) evenly between the workers.
    processes : bool
        Workers in processes (True) or threads of this process.
    **kwargs
        Passed to ``LocalCluster``; ``dashboard_address`` defaults to ``":0"`` (any
        free port; served only when bokeh is installed, see
        :func:`dashboard_missing`), ``silence_logs`` to ``logging.WARNING``.

    Returns
    -------
    distributed.LocalCluster
    """
    from distributed import LocalCluster

    import logging

    n_workers = n_workers or os.cpu_count() or 1
    kwargs.setdefault("silence_logs", logging.WARNING)
    with worker_environ():
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                            memory_limit=memory_limit, processes=processes,
                            dashboard_address=kwargs.pop("dashboard_address", ":0"), **kwargs)


def visible_gpus(environ=None) -> list[str]:
    """Ids of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` or nvidia-smi)."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [t for t in (s.strip() for s in visible.split(",")) if t and t != "-1"]
    info = ClusterDetector(environ).detect_local_gpus()
    return [str(i) for i in range(info.total_gpus)] if info else []


def gpu_worker_specs(devices: list[str], memory_limit="auto", threads: int = 1) -> dict:
    """Worker specs: one Nanny per GPU, pinned with ``CUDA_VISIBLE_DEVICES``, resource ``GPU=1``."""
    from distributed import Nanny

    return {f"gpu-{dev}": {"cls": Nanny, "options": {
        "nthreads": threads, "memory_limit": memory_limit, "resources": {"GPU": 1},
        "env": {"CUDA_VISIBLE_DEVICES": str(dev), **GPU_ENV}}} for dev in devices}


def gpu_cluster(devices=None, memory_limit="auto", threads_per_worker: int = 1, **kwargs):
    """One worker process per visible GPU, pinned to it, with the worker resource ``GPU=1``.

    Uses dask-cuda's ``LocalCUDACluster`` when it is installed, else a
    ``distributed.SpecCluster`` of pinned Nannies. Raises ``ValueError`` without GPUs.
    """
    devices = [str(d) for d in (devices if devices is not None else visible_gpus())]
    if not devices:
        raise ValueError("gpu_cluster: no GPU is visible (CUDA_VISIBLE_DEVICES / nvidia-smi); "
                         "use local_cluster() on a CPU machine")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    with worker_environ():
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            LocalCUDACluster = None
        if LocalCUDACluster is not None:
            return LocalCUDACluster(CUDA_VISIBLE_DEVICES=",".join(devices), memory_limit=memory_limit,
                                    threads_per_worker=threads_per_worker,
                                    resources={"GPU": 1}, **kwargs)
        from distributed import Scheduler, SpecCluster

        scheduler = {"cls": Scheduler, "options": {"dashboard_address": kwargs.pop("dashboard_address", ":0")}}
        return SpecCluster(workers=gpu_worker_specs(devices, memory_limit, threads_per_worker),
                           scheduler=scheduler, **kwargs)


def connect(address: str, **kwargs):
    """A Client of the running scheduler at ``address`` (e.g. ``tcp://host:8786``)."""
    from distributed import Client

    if not isinstance(address, str) or "://" not in address and ":" not in address:
        raise ValueError(f"address must look like 'tcp://host:8786'; got {address!r}")
    return Client(address, **kwargs)


def jobqueue_cluster(kind: str, cfg: dict, detected: ClusterInfo | None = None):
    """A dask-jobqueue PBS or SLURM cluster from the ``cluster`` section (not yet scaled)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ImportError(f"cluster type {kind!r} needs dask-jobqueue: pip install 'nlsq-dask[hpc]'") from None
    cls = dask_jobqueue.PBSCluster if kind == "pbs" else dask_jobqueue.SLURMCluster
    gpus = cfg.get("gpus_per_node", detected.gpus_per_node if detected else 0) or 0
    extra = list(cfg.get("job_extra") or [])
    if gpus and kind == "slurm":
        extra.append(f"--gres=gpu:{gpus}")
    options = dict(cores=int(cfg.get("cores_per_node", os.cpu_count() or 1)),
                   memory=str(cfg.get("memory_per_node", "16GiB")),
                   processes=int(cfg.get("processes_per_node", max(1, gpus) if gpus else 1)),
                   walltime=cfg.get("walltime", "01:00:00"), queue=cfg.get("queue"),
                   account=cfg.get("account"), job_extra_directives=extra)
    if gpus and kind == "pbs":
        options["resource_spec"] = (f"select=1:ncpus={options['cores']}:ngpus={gpus}:"
                                    f"mem={options['memory'].replace('iB', 'b').lower()}")
    if gpus:
        options["worker_extra_args"] = ["--resources", f"GPU={max(1, gpus // options['processes'])}"]
    return cls(**{k: v for k, v in options.items() if v is not None})


def from_config(cluster: dict | None = None, detected: ClusterInfo | None = None) -> ClusterHandle:
    """Start (or connect to) the cluster a ``cluster`` section describes.

    ``type``: ``local`` (default), ``gpu``, ``dask`` (``address``), ``pbs`` or
    ``slurm`` (``nodes``, ``gpus_per_node``, ``cores_per_node``, ``memory_per_node``,
    ``walltime``, ``queue``, ``account``; through dask-jobqueue). Inside a PBS/SLURM
    allocation, missing sizes default to what :class:`ClusterDetector` finds.
    """
    from distributed import Client

    cfg = dict(cluster or {})
    kind = cfg.get("type", "local")
    detected = detected if detected is not None else ClusterDetector().detect()
    if kind == "local":
        c = local_cluster(n_workers=cfg.get("n_workers"),
                          threads_per_worker=int(cfg.get("threads_per_worker", 1)))
        return ClusterHandle(Client(c), c)
    if kind == "gpu":
        c = gpu_cluster()
        return ClusterHandle(Client(c), c)
    if kind in ("dask", "address"):
        address = cfg.get("address") or (detected.address if detected else None)
        if not address:
            raise ValueError("cluster type 'dask' needs an 'address' (or DASK_SCHEDULER_ADDRESS)")
        return ClusterHandle(connect(address))
    if kind in ("pbs", "slurm"):
        c = jobqueue_cluster(kind, cfg, detected)
        nodes = int(cfg.get("nodes") or (detected.node_count if detected else 1))
        c.scale(jobs=nodes)
        return ClusterHandle(Client(c), c)
    raise ValueError(f"cluster type must be one of local, gpu, dask, pbs, slurm; got {kind!r}")
