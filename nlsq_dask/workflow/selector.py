"""Choose a processing tier and partition size from an explicit memory model.

The model (no size-by-memory lookup table), with ``s = safety_fraction``::

    data_bytes     = N * (k + 1 [+ 1 for sigma]) * itemsize
    jacobian_bytes = N * p * 8
    peak_standard  = data_bytes + jacobian_bytes + p*p*8

    requested tier (config.tier)                          -> that tier
    goal MEMORY_EFFICIENT: peak_standard <= s*local/8     -> STANDARD, else STREAMING
    peak_standard <= s*local (and data <= s*host on GPU)  -> STANDARD
    workers:    data_bytes <= s * sum(worker memory)      -> CHUNKED
    no workers: data_bytes <= s * host                    -> CHUNKED (persisted locally)
    otherwise                                             -> STREAMING
    STREAMING with checkpoints enabled                    -> STREAMING_CHECKPOINT

``local`` is the host memory capped by ``memory_limit_gb``, or the free memory
of one GPU when a GPU is visible. Partition size: ``config.chunk_size``, else
the lazy data's own partitions, else the most points whose working set
``n*(k+2)*8 + n*p*8`` fits ``min(256 MiB, s * worker memory / threads)``
(64 MiB for MEMORY_EFFICIENT), as a multiple of 4096 (at least 4096).

NLSQ's spellings work too: ``WorkflowSelector(memory_limit_gb=8.0).select(n_points=...,
n_params=..., goal=...)`` returns the chosen configuration (a :class:`WorkflowConfig`, which
``fit(config=...)`` or ``fit(workflow=...)`` takes), and the :class:`Selection` that
:func:`auto_select_workflow` returns reads like its configuration (``selection.n_starts``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from .config import WorkflowConfig, _is_int
from .enums import DatasetSizeTier, OptimizationGoal, WorkflowTier
from .resources import GiB, ResourceSnapshot

_CONFIG_ATTRS = frozenset(WorkflowConfig.field_names()) | {"preset"}

__all__ = ["DatasetProfile", "Selection", "WorkflowSelector", "auto_select_workflow",
           "format_bytes"]

MiB = 2**20
_TILE = 4096
_MAX_PARTITION_BYTES = 256 * MiB
_MEMORY_EFFICIENT_PARTITION_BYTES = 64 * MiB
_MEMORY_EFFICIENT_SHRINK = 8
_STREAMING = (WorkflowTier.STREAMING, WorkflowTier.STREAMING_CHECKPOINT)


def format_bytes(n: float) -> str:
    """Human-readable size in binary units, e.g. ``'1.5 GiB'``."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def _check_int(name: str, value: object, minimum: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


@dataclass(frozen=True)
class DatasetProfile:
    """Size and layout of a dataset, known without computing it.

    Parameters
    ----------
    n_points : int
        Number of data points N.
    n_params : int
        Number of fit parameters p.
    n_inputs : int
        Independent-variable rows k (x is ``(k, N)``).
    itemsize : int
        Bytes per element of the data.
    has_sigma : bool
        Whether per-point uncertainties are given.
    partition_points : int, optional
        Points per partition of the source (lazy data).
    n_partitions : int
        Number of source partitions.
    lazy : bool
        Whether the data is lazy (dask/zarr).
    """

    n_points: int
    n_params: int
    n_inputs: int = 1
    itemsize: int = 8
    has_sigma: bool = False
    partition_points: int | None = None
    n_partitions: int = 1
    lazy: bool = False

    def __post_init__(self) -> None:
        _check_int("n_points", self.n_points, 0)
        _check_int("n_params", self.n_params, 1)
        _check_int("n_inputs", self.n_inputs, 1)
        _check_int("itemsize", self.itemsize, 1)
        _check_int("n_partitions", self.n_partitions, 1)
        if self.partition_points is not None:
            _check_int("partition_points", self.partition_points, 1)

    @property
    def data_bytes(self) -> int:
        """Bytes of x, y (and sigma): ``N*(k+1+has_sigma)*itemsize``."""
        return self.n_points * (self.n_inputs + 1 + int(self.has_sigma)) * self.itemsize

    @property
    def jacobian_bytes(self) -> int:
        """Bytes of the float64 Jacobian: ``N*p*8``."""
        return self.n_points * self.n_params * 8

    @property
    def peak_standard_bytes(self) -> int:
        """Data + Jacobian + ``p×p`` normal matrix."""
        return self.data_bytes + self.jacobian_bytes + self.n_params**2 * 8

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the profile."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Selection:
    """Result of :meth:`WorkflowSelector.select`.

    A selection reads like its configuration, as the config NLSQ's
    ``auto_select_workflow`` returns: ``selection.n_starts``, ``selection.gtol``,
    ``selection.enable_checkpoints`` (any :class:`WorkflowConfig` field) are
    ``selection.config``'s.

    Attributes
    ----------
    tier : WorkflowTier
        Chosen tier.
    config : WorkflowConfig
        Config with ``tier`` set, tolerances resolved and goal modifiers applied.
    partition_points : int
        Points per partition (``n_points`` for STANDARD).
    profile : DatasetProfile
    resources : ResourceSnapshot
    reasons : tuple of str
        Why, in words and numbers.
    safety_fraction : float
    """

    tier: WorkflowTier
    config: WorkflowConfig
    partition_points: int
    profile: DatasetProfile
    resources: ResourceSnapshot
    reasons: tuple[str, ...] = ()
    safety_fraction: float = 0.5

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not attributes of the Selection itself
        if name in _CONFIG_ATTRS:
            return getattr(self.config, name)
        raise AttributeError(f"'Selection' object has no attribute {name!r}")

    def explain(self) -> str:
        """Multi-line human explanation of the choice."""
        p, r, c = self.profile, self.resources, self.config
        lines = [
            f"dataset: {p.n_points:,} points x {p.n_params} params "
            f"({DatasetSizeTier.from_n_points(p.n_points).value})",
            f"data: {format_bytes(p.data_bytes)}; Jacobian: {format_bytes(p.jacobian_bytes)}; "
            f"standard peak: {format_bytes(p.peak_standard_bytes)}",
            f"memory: local host {format_bytes(r.host_memory_gb * GiB)}"
            + (f", GPU {format_bytes(r.gpu_memory_gb * GiB)} on {r.n_gpus} device(s)"
               if r.n_gpus else ", no GPU")
            + (f", workers {format_bytes(r.total_worker_memory_gb * GiB)} on {r.n_workers}"
               if r.n_workers else ", no workers"),
            f"budget: safety fraction {self.safety_fraction:g} of each memory",
            f"tier: {self.tier.value}",
        ]
        lines += [f"  - {reason}" for reason in self.reasons]
        lines.append(f"partition: {self.partition_points:,} points")
        lines.append(f"tolerances: ftol={c.ftol:g} xtol={c.xtol:g} gtol={c.gtol:g} "
                     f"(explicit values kept, others adaptive for "
                     f"{DatasetSizeTier.from_n_points(p.n_points).value} data"
                     + (f", goal {c.goal.value}" if c.goal else "") + ")")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of the selection."""
        return {
            "tier": self.tier.value,
            "config": self.config.to_dict(),
            "partition_points": self.partition_points,
            "profile": self.profile.to_dict(),
            "resources": self.resources.to_dict(),
            "reasons": list(self.reasons),
            "safety_fraction": self.safety_fraction,
        }


class WorkflowSelector:
    """Pick a tier and partition size from a :class:`DatasetProfile` and resources.

    Parameters
    ----------
    memory_limit_gb : float, optional
        Cap on the host memory (GiB) every selection plans with, as NLSQ's
        ``WorkflowSelector(memory_limit_gb=...)`` (here a cap: never more than the
        machine has); a config's own ``memory_limit_gb`` caps too.
    safety_fraction : float
        Fraction of each memory pool the fit may plan to use, in (0, 1].
    """

    def __init__(self, memory_limit_gb: float | None = None, safety_fraction: float = 0.5):
        if memory_limit_gb is not None and (
                isinstance(memory_limit_gb, bool) or not isinstance(memory_limit_gb, numbers.Real)
                or not 0 < memory_limit_gb < float("inf")):
            raise ValueError(f"memory_limit_gb must be a positive number of GiB or None; "
                             f"got {memory_limit_gb!r}")
        if isinstance(safety_fraction, bool) or not isinstance(safety_fraction, numbers.Real) \
                or not 0 < safety_fraction <= 1:
            raise ValueError(f"safety_fraction must be a number in (0, 1]; got {safety_fraction!r}")
        self.memory_limit_gb = None if memory_limit_gb is None else float(memory_limit_gb)
        self.safety_fraction = float(safety_fraction)

    def select(self, profile: DatasetProfile | int | None = None,
               resources: ResourceSnapshot | int | None = None,
               config: WorkflowConfig | OptimizationGoal | str | None = None, *,
               n_points: int | None = None, n_params: int | None = None,
               goal: OptimizationGoal | str | None = None) -> Selection | WorkflowConfig:
        """Choose the tier, partition size and resolved config.

        Two forms, told apart by the arguments:

        * ``select(profile, resources, config=None)`` returns a :class:`Selection`;
        * NLSQ's ``select(n_points, n_params, goal=None)`` (positional or by name)
          detects this machine's resources on each call and returns the selection's
          :class:`WorkflowConfig` (tier chosen, tolerances resolved, the goal's
          multi-start and validation settings applied), the config to fit with.

        Parameters
        ----------
        profile : DatasetProfile
        resources : ResourceSnapshot
        config : WorkflowConfig, optional
            Default ``WorkflowConfig()``.
        n_points, n_params : int
            NLSQ's form: dataset size and number of parameters.
        goal : OptimizationGoal or str, optional
            NLSQ's form: the optimization goal.

        Returns
        -------
        Selection or WorkflowConfig
            A Selection for ``(profile, resources)``; a WorkflowConfig for NLSQ's form.
        """
        if n_points is not None or n_params is not None or _is_int(profile):
            if (n_points is not None and profile is not None) or \
                    (n_params is not None and resources is not None) or \
                    (goal is not None and config is not None):
                raise TypeError("select() got n_points, n_params or goal both by position "
                                "and by name")
            return self._select_nlsq(profile if n_points is None else n_points,
                                     resources if n_params is None else n_params,
                                     config if goal is None else goal)
        if goal is not None:
            raise TypeError("goal= goes with select(n_points=..., n_params=...); with a "
                            "DatasetProfile give the goal in config")
        if not isinstance(profile, DatasetProfile):
            raise TypeError(f"profile must be a DatasetProfile; got {type(profile).__name__}")
        if not isinstance(resources, ResourceSnapshot):
            raise TypeError(f"resources must be a ResourceSnapshot; got {type(resources).__name__}")
        config = WorkflowConfig() if config is None else config
        if not isinstance(config, WorkflowConfig):
            raise TypeError(f"config must be a WorkflowConfig; got {type(config).__name__}")
        limit = self.memory_limit_gb
        if limit is not None and (config.memory_limit_gb is None or config.memory_limit_gb > limit):
            config = config.with_overrides(memory_limit_gb=limit)
        tier, reasons = self._choose_tier(profile, resources, config)
        if tier is WorkflowTier.STANDARD and config.enable_checkpoints:
            tier = WorkflowTier.CHUNKED
            reasons.append("checkpointing is enabled and a standard fit (data in memory) is "
                           "not checkpointed, so the data run as chunked passes, each "
                           "checkpointed")
        if tier is WorkflowTier.STREAMING and config.enable_checkpoints:
            tier = WorkflowTier.STREAMING_CHECKPOINT
            reasons.append("checkpointing is enabled, so streaming runs as streaming_checkpoint")
        extra: dict[str, Any] = {"tier": tier}
        if tier is WorkflowTier.STREAMING_CHECKPOINT and not config.enable_checkpoints:
            extra["enable_checkpoints"] = True
            reasons.append("streaming_checkpoint requested: checkpoints turned on")
        if tier is WorkflowTier.STANDARD:
            partition = profile.n_points
        else:
            partition, why = self._partition_points(profile, resources, config)
            reasons.append(why)
        resolved = config.with_goal_defaults().with_overrides(**extra)
        resolved = resolved.with_adaptive_tolerances(profile.n_points)
        return Selection(tier=tier, config=resolved, partition_points=partition, profile=profile,
                         resources=resources, reasons=tuple(reasons),
                         safety_fraction=self.safety_fraction)

    def _select_nlsq(self, n_points: object, n_params: object, goal: object) -> WorkflowConfig:
        if n_points is None or n_params is None:
            raise TypeError("select() needs n_points and n_params (NLSQ's form) or a "
                            "DatasetProfile and a ResourceSnapshot")
        profile = DatasetProfile(n_points=n_points, n_params=n_params)
        resources = ResourceSnapshot.detect(memory_limit_gb=self.memory_limit_gb)
        return self.select(profile, resources, WorkflowConfig(goal=goal)).config

    # ------------------------------------------------------------------ internals
    def _local_budget(self, resources: ResourceSnapshot, config: WorkflowConfig) -> tuple[float, str]:
        if resources.n_gpus:
            return resources.gpu_memory_per_device_gb * GiB, "one GPU's free memory"
        return self._host_gb(resources, config) * GiB, "local host memory"

    @staticmethod
    def _host_gb(resources: ResourceSnapshot, config: WorkflowConfig) -> float:
        host = resources.host_memory_gb
        if config.memory_limit_gb is not None:
            host = min(host, config.memory_limit_gb)
        return host

    def _choose_tier(self, p: DatasetProfile, r: ResourceSnapshot,
                     c: WorkflowConfig) -> tuple[WorkflowTier, list[str]]:
        s = self.safety_fraction
        if c.tier is not None:
            return c.tier, [f"tier {c.tier.value} requested by the configuration"]
        host_b = self._host_gb(r, c) * GiB
        local_b, local_name = self._local_budget(r, c)
        peak = p.peak_standard_bytes
        if c.goal is OptimizationGoal.MEMORY_EFFICIENT:
            small = s * local_b / _MEMORY_EFFICIENT_SHRINK
            if peak <= small and p.data_bytes <= s * host_b:
                return WorkflowTier.STANDARD, [
                    f"goal memory_efficient: standard peak {format_bytes(peak)} <= "
                    f"{format_bytes(small)} (1/{_MEMORY_EFFICIENT_SHRINK} of {s:g} x {local_name})"]
            return WorkflowTier.STREAMING, [
                f"goal memory_efficient prefers streaming: standard peak {format_bytes(peak)} > "
                f"{format_bytes(small)} (1/{_MEMORY_EFFICIENT_SHRINK} of {s:g} x {local_name})"]
        reasons = []
        fits_local = peak <= s * local_b
        fits_host = p.data_bytes <= s * host_b
        if fits_local and fits_host:
            return WorkflowTier.STANDARD, [
                f"standard peak {format_bytes(peak)} (data {format_bytes(p.data_bytes)} + "
                f"Jacobian {format_bytes(p.jacobian_bytes)}) <= {format_bytes(s * local_b)} "
                f"({s:g} x {local_name} {format_bytes(local_b)})"]
        if not fits_local:
            reasons.append(f"standard peak {format_bytes(peak)} > {format_bytes(s * local_b)} "
                           f"({s:g} x {local_name} {format_bytes(local_b)})")
        else:
            reasons.append(f"data {format_bytes(p.data_bytes)} > {format_bytes(s * host_b)} "
                           f"({s:g} x host memory {format_bytes(host_b)})")
        if r.n_workers:
            workers_b = r.total_worker_memory_gb * GiB
            if p.data_bytes <= s * workers_b:
                reasons.append(f"data {format_bytes(p.data_bytes)} <= {format_bytes(s * workers_b)} "
                               f"({s:g} x memory of {r.n_workers} workers "
                               f"{format_bytes(workers_b)}): persist partitions on the workers")
                return WorkflowTier.CHUNKED, reasons
            reasons.append(f"data {format_bytes(p.data_bytes)} > {format_bytes(s * workers_b)} "
                           f"({s:g} x memory of {r.n_workers} workers {format_bytes(workers_b)}): "
                           f"re-read partitions from the source each pass")
            return WorkflowTier.STREAMING, reasons
        if fits_host:
            reasons.append(f"data {format_bytes(p.data_bytes)} <= {format_bytes(s * host_b)} "
                           f"({s:g} x host memory {format_bytes(host_b)}): persist locally, "
                           f"Jacobian only per partition")
            return WorkflowTier.CHUNKED, reasons
        reasons.append(f"data {format_bytes(p.data_bytes)} > {format_bytes(s * host_b)} "
                       f"({s:g} x host memory {format_bytes(host_b)}) and no workers: "
                       f"re-read partitions from the source each pass")
        return WorkflowTier.STREAMING, reasons

    def _partition_points(self, p: DatasetProfile, r: ResourceSnapshot,
                          c: WorkflowConfig) -> tuple[int, str]:
        if c.chunk_size is not None:
            return c.chunk_size, f"partition of {c.chunk_size:,} points from chunk_size"
        if p.lazy and p.partition_points is not None:
            return p.partition_points, (f"partition of {p.partition_points:,} points "
                                        f"from the data's own chunks")
        s = self.safety_fraction
        if r.n_workers:
            per_worker = min(r.worker_memory_gb) * GiB
            threads = max(r.n_threads // r.n_workers, 1)
            where = "smallest worker"
        else:
            per_worker = self._host_gb(r, c) * GiB
            threads = r.n_threads
            where = "host"
        cap = (_MEMORY_EFFICIENT_PARTITION_BYTES if c.goal is OptimizationGoal.MEMORY_EFFICIENT
               else _MAX_PARTITION_BYTES)
        budget = min(cap, s * per_worker / threads)
        per_point = (p.n_inputs + 2) * 8 + p.n_params * 8
        points = max(int(budget // per_point) // _TILE * _TILE, _TILE)
        if p.n_points:
            points = min(points, -(-p.n_points // _TILE) * _TILE)
        return points, (f"partition of {points:,} points: working set {per_point} B/point within "
                        f"{format_bytes(budget)} (min of {format_bytes(cap)} and {s:g} x "
                        f"{where} memory / {threads} threads)")


def auto_select_workflow(
    n_points: int,
    n_params: int,
    goal: OptimizationGoal | str | None = None,
    memory_limit_gb: float | None = None,
    *,
    n_inputs: int = 1,
    itemsize: int = 8,
    has_sigma: bool = False,
    resources: ResourceSnapshot | None = None,
    config: WorkflowConfig | None = None,
) -> Selection:
    """Select a workflow for ``n_points`` x ``n_params`` on this machine.

    NLSQ's arguments (``n_points, n_params, goal, memory_limit_gb``); the
    :class:`Selection` returned reads like the config NLSQ's returns
    (``auto_select_workflow(...).n_starts`` is its config's).

    Parameters
    ----------
    n_points, n_params : int
        Dataset size and number of parameters.
    goal : OptimizationGoal or str, optional
        Overrides ``config.goal`` when given.
    memory_limit_gb : float, optional
        Overrides ``config.memory_limit_gb`` when given.
    n_inputs, itemsize, has_sigma
        See :class:`DatasetProfile`.
    resources : ResourceSnapshot, optional
        Detected with :meth:`ResourceSnapshot.detect` when not given.
    config : WorkflowConfig, optional

    Returns
    -------
    Selection
    """
    config = WorkflowConfig() if config is None else config
    kw = {k: v for k, v in (("goal", goal), ("memory_limit_gb", memory_limit_gb)) if v is not None}
    if kw:
        config = config.with_overrides(**kw)
    profile = DatasetProfile(n_points=n_points, n_params=n_params, n_inputs=n_inputs,
                             itemsize=itemsize, has_sigma=has_sigma)
    if resources is None:
        resources = ResourceSnapshot.detect(memory_limit_gb=config.memory_limit_gb)
    return WorkflowSelector().select(profile, resources, config)
