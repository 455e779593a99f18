"""``WorkflowConfig``: the immutable, validated configuration of a fit.

``None`` in a field means "decide later": ``tier=None`` lets the selector
choose, ``goal=None`` is balanced (no goal modifiers), ``ftol/xtol/gtol=None``
are filled from the adaptive tolerance table by dataset size
(:meth:`WorkflowConfig.with_adaptive_tolerances`).

Configs saved by NLSQ's ``WorkflowConfig.to_dict`` (upper-case enum names, ``n_starts=0``,
its ``_preset`` key) load with :meth:`WorkflowConfig.from_dict`; :attr:`WorkflowConfig.preset`
names the preset a config came from, as NLSQ's does.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from .enums import OptimizationGoal, WorkflowTier, adaptive_tolerance, parse_enum
from .presets import canonical_preset_name, preset_overrides

__all__ = [
    "WorkflowConfig",
    "SAMPLERS",
    "REDUCTIONS",
    "LOSSES",
    "CLUSTER_TYPES",
    "CLUSTER_KEYS",
    "CHECKPOINT_FIELDS",
    "CHECKPOINT_RUN_OPTIONS",
]

#: the checkpoint settings of a configuration (WorkflowConfig fields; fit() takes them too)
CHECKPOINT_FIELDS = ("checkpoint_dir", "enable_checkpoints", "checkpoint_frequency")
#: the per-fit checkpoint options of fit(): which store, resume it or start over
CHECKPOINT_RUN_OPTIONS = ("checkpoint_name", "resume", "checkpoint_fresh")
SAMPLERS = ("lhs", "sobol", "halton")
REDUCTIONS = ("normal", "qr")
LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
CLUSTER_TYPES = ("local", "gpu", "pbs", "slurm", "dask")
#: keys allowed in the ``cluster`` mapping (the ``cluster:`` section of nlsq.yaml)
CLUSTER_KEYS = (
    "type", "nodes", "gpus_per_node", "cores_per_node", "memory_per_node",
    "processes_per_node", "walltime", "queue", "account", "address",
    "n_workers", "threads_per_worker", "job_extra",
)
_CLUSTER_INT_KEYS = ("nodes", "gpus_per_node", "cores_per_node", "processes_per_node",
                     "n_workers", "threads_per_worker")
_TOLERANCES = ("ftol", "xtol", "gtol")
#: the private field NLSQ's to_dict/from_dict carry: the preset a config came from
_PRESET_KEY = "_preset"


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class WorkflowConfig:
    """Configuration of a fit; validated on construction.

    Parameters
    ----------
    tier : WorkflowTier or str, optional
        Processing tier; None lets the selector choose.
    goal : OptimizationGoal or str, optional
        Optimization goal; None is balanced (no goal modifiers).
    gtol, ftol, xtol : float, optional
        Termination tolerances (scipy meanings; 0 switches that test off, as in scipy);
        None is adaptive by dataset size.
    enable_multistart : bool
        Run several starts and keep the best.
    n_starts : int
        Number of starts when multi-start is enabled (>= 0; 0 or 1 is a single start,
        NLSQ's 0 meaning "no multi-start").
    sampler : {'lhs', 'sobol', 'halton'}
        Sampler generating the starting points.
    center_on_p0 : bool
        Centre the sampled starts on ``p0``.
    scale_factor : float
        Positive width of the sampling box relative to the bounds/``p0``.
    memory_limit_gb : float, optional
        Cap on local memory (GiB) used by the selector.
    chunk_size : int, optional
        Points per partition; None lets the selector choose.
    enable_checkpoints : bool
        Write zarr checkpoints (streaming implies STREAMING_CHECKPOINT).
    checkpoint_dir : str, optional
        Directory of the checkpoint stores.
    checkpoint_frequency : int
        Iterations between checkpoints (>= 1).
    max_nfev : int, optional
        Maximum number of function evaluations (passes).
    split_every : int
        Fan-in of the tree reduction (>= 2).
    reduction : {'normal', 'qr'}
        Normal equations (``JᵀJ``) or TSQR statistics.
    loss : {'linear', 'soft_l1', 'huber', 'cauchy', 'arctan'} or callable
        Robust loss, as in scipy (a callable ``rho(z) -> (3, N)`` written with
        ``jax.numpy``; not storable in YAML).
    f_scale : float
        Positive soft margin of the robust loss.
    scheduler_address : str, optional
        Address of a dask scheduler to connect to.
    validation_passes : int
        Validation restarts from the solution (QUALITY), >= 0.
    tournament : bool
        Choose among multi-starts by a tournament on a subset of partitions.
    subset_passes : bool
        CHUNKED and STREAMING fits over many partitions iterate first on growing, evenly
        spread subsets of partitions, then finish with full-data passes (the same
        termination tests on the full data). False: every pass reads all the data.
    cluster : dict, optional
        Cluster description (keys in ``CLUSTER_KEYS``; ``type`` in
        ``CLUSTER_TYPES``).
    compilation_cache : bool or str
        Keep compiled kernels in JAX's persistent compilation cache, so a new process
        does not compile them again: True (default, in the user's cache directory),
        False, or a directory (``NLSQ_COMPILATION_CACHE``).
    _preset : str, optional
        The preset this config came from (NLSQ's private field; read it as
        :attr:`preset`). Set by :meth:`from_preset`, kept by :meth:`to_dict` /
        :meth:`from_dict`, cleared by :meth:`with_overrides` and
        :meth:`with_adaptive_tolerances`; not compared by ``==``.
    """

    tier: WorkflowTier | None = None
    goal: OptimizationGoal | None = None
    gtol: float | None = None
    ftol: float | None = None
    xtol: float | None = None
    enable_multistart: bool = False
    n_starts: int = 10
    sampler: str = "lhs"
    center_on_p0: bool = True
    scale_factor: float = 1.0
    memory_limit_gb: float | None = None
    chunk_size: int | None = None
    enable_checkpoints: bool = False
    checkpoint_dir: str | None = None
    checkpoint_frequency: int = 1
    max_nfev: int | None = None
    split_every: int = 8
    reduction: str = "normal"
    loss: str = "linear"
    f_scale: float = 1.0
    scheduler_address: str | None = None
    validation_passes: int = 0
    tournament: bool = False
    subset_passes: bool = True
    cluster: dict | None = field(default=None, hash=False)
    compilation_cache: bool | str = True
    _preset: str | None = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        setv = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.tier is not None:
            setv("tier", parse_enum(WorkflowTier, self.tier, "tier"))
        if self.goal is not None:
            setv("goal", parse_enum(OptimizationGoal, self.goal, "goal"))
        for name in _TOLERANCES:   # 0 switches that test off, as in scipy
            self._check_real(name, positive=False, optional=True)
        for name in ("enable_multistart", "center_on_p0", "enable_checkpoints", "tournament",
                     "subset_passes"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool (True/False); got {type(v).__name__} {v!r}")
        self._check_int("n_starts", minimum=0)
        self._check_int("checkpoint_frequency", minimum=1)
        self._check_int("split_every", minimum=2)
        self._check_int("validation_passes", minimum=0)
        self._check_int("chunk_size", minimum=1, optional=True)
        self._check_int("max_nfev", minimum=1, optional=True)
        self._check_real("scale_factor", positive=True)
        self._check_real("f_scale", positive=True)
        self._check_real("memory_limit_gb", positive=True, optional=True)
        self._check_choice("sampler", SAMPLERS)
        self._check_choice("reduction", REDUCTIONS)
        if not callable(self.loss):      # a callable rho(z) -> (3, N) as scipy's
            self._check_choice("loss", LOSSES)
        for name in ("checkpoint_dir", "scheduler_address"):
            v = getattr(self, name)
            if v is not None:
                if hasattr(v, "__fspath__") and name == "checkpoint_dir":
                    setv(name, str(v.__fspath__()))
                elif not isinstance(v, str):
                    raise TypeError(f"{name} must be a str or None; got {type(v).__name__} {v!r}")
        if self.cluster is not None:
            setv("cluster", _validate_cluster(self.cluster))
        if self._preset is not None and not isinstance(self._preset, str):
            raise TypeError(f"_preset (the preset name) must be a str or None; got "
                            f"{type(self._preset).__name__} {self._preset!r}")
        cache = self.compilation_cache
        if hasattr(cache, "__fspath__"):
            setv("compilation_cache", str(cache.__fspath__()))
        elif not isinstance(cache, (bool, str)) or cache == "":
            raise TypeError(f"compilation_cache must be True, False or a directory; got "
                            f"{type(cache).__name__} {cache!r}")

    def _check_int(self, name: str, *, minimum: int, optional: bool = False) -> None:
        v = getattr(self, name)
        if v is None and optional:
            return
        if not _is_int(v):
            raise TypeError(f"{name} must be an integer >= {minimum}; got {type(v).__name__} {v!r}")
        if v < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}; got {v}")
        object.__setattr__(self, name, int(v))

    def _check_real(self, name: str, *, positive: bool, optional: bool = False) -> None:
        v = getattr(self, name)
        if v is None and optional:
            return
        kind = "positive" if positive else "non-negative"
        if not _is_real(v):
            raise TypeError(f"{name} must be a {kind} number; got {type(v).__name__} {v!r}")
        v = float(v)
        if not ((v > 0 if positive else v >= 0) and v != float("inf")):
            raise ValueError(f"{name} must be a {kind} finite number; got {v!r}")
        object.__setattr__(self, name, v)

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        v = getattr(self, name)
        key = v.strip().lower() if isinstance(v, str) else None
        if key not in choices:
            valid = ", ".join(repr(c) for c in choices)
            raise ValueError(f"{name}={v!r} is not valid; expected one of {valid}")
        object.__setattr__(self, name, key)

    # ------------------------------------------------------------------ conversion
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all configuration fields, in declaration order (not ``_preset``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != _PRESET_KEY)

    @property
    def preset(self) -> str | None:
        """Name of the preset this config came from (lower case), None if none."""
        return self._preset

    @classmethod
    def check_keys(cls, keys, where: str = "WorkflowConfig") -> None:
        """Raise ValueError naming the first key that is not a field.

        Parameters
        ----------
        keys : iterable of str
            Keys to check.
        where : str
            Where the keys came from, for the message.
        """
        names = cls.field_names()
        for key in keys:
            if key not in names:
                raise ValueError(
                    f"unknown {where} key {key!r}; valid keys are: {', '.join(names)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of all fields (enums as their string values) and ``_preset``.

        NLSQ's keys are all there (``tier``, ``goal``, the tolerances, the multi-start,
        memory and checkpoint fields, ``_preset``), with this package's fields beside.
        """
        out: dict[str, Any] = {}
        for name in self.field_names():
            v = getattr(self, name)
            if isinstance(v, (WorkflowTier, OptimizationGoal)):
                v = v.value
            elif isinstance(v, dict):
                v = dict(v)
            elif callable(v):            # a callable loss: named, not serialised
                v = str(v) if type(v).__str__ is not object.__str__ else \
                    f"callable:{getattr(v, '__qualname__', type(v).__name__)}"
            out[name] = v
        out[_PRESET_KEY] = self._preset
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkflowConfig:
        """Build a config from a dict such as :meth:`to_dict` returns.

        Parameters
        ----------
        d : dict
            Field names to values; missing fields take their defaults. A dict saved
            by NLSQ's ``WorkflowConfig.to_dict`` reads as is (enum names in any case,
            its ``_preset`` key).

        Raises
        ------
        ValueError
            On an unknown key (the message lists the valid keys) or an
            invalid value.
        """
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict of WorkflowConfig fields; got {type(d).__name__}")
        cls.check_keys(k for k in d if k != _PRESET_KEY)
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str) -> WorkflowConfig:
        """Config of the named preset, with :attr:`preset` set to its name.

        Parameters
        ----------
        name : str
            One of ``WORKFLOW_PRESETS`` (the spec's seven), of ``NLSQ_PRESETS``
            (NLSQ's other names) or of ``DEPRECATED_PRESET_ALIASES``; any case.

        Returns
        -------
        WorkflowConfig

        Warns
        -----
        DeprecationWarning
            For NLSQ's deprecated aliases (``preset`` is then the name it stands for).

        Raises
        ------
        ValueError
            If the preset is unknown; the message lists the preset names.
        """
        key = canonical_preset_name(name, stacklevel=2)
        return cls.from_dict({**preset_overrides(key), _PRESET_KEY: key})

    def with_overrides(self, **kwargs: Any) -> WorkflowConfig:
        """Copy with the given fields replaced (validated).

        As NLSQ's, a copy with any field replaced no longer names a preset
        (:attr:`preset` None) unless ``_preset`` is given too.

        Raises
        ------
        ValueError
            On an unknown field name or an invalid value.
        """
        self.check_keys(k for k in kwargs if k != _PRESET_KEY)
        if kwargs:
            kwargs.setdefault(_PRESET_KEY, None)
        return dataclasses.replace(self, **kwargs)

    def differences(self, other: WorkflowConfig | None = None) -> dict[str, Any]:
        """Fields whose values differ from ``other`` (default: ``WorkflowConfig()``)."""
        other = WorkflowConfig() if other is None else other
        return {
            name: getattr(self, name)
            for name in self.field_names()
            if getattr(self, name) != getattr(other, name)
        }

    # ------------------------------------------------------------------ tolerances
    def resolved_tolerances(self, n_points: int) -> tuple[float, float, float]:
        """``(ftol, xtol, gtol)``: explicit values, else adaptive by ``n_points``.

        Parameters
        ----------
        n_points : int
            Number of data points.
        """
        default = adaptive_tolerance(n_points, self.goal)
        return tuple(default if getattr(self, n) is None else getattr(self, n) for n in _TOLERANCES)

    def with_adaptive_tolerances(self, n_points: int) -> WorkflowConfig:
        """Copy with tolerances that are None filled by :func:`adaptive_tolerance`.

        Explicitly set tolerances are kept. The config's goal shifts the table
        (QUALITY one tier tighter, FAST one looser). The copy names no preset, as
        NLSQ's.
        """
        ftol, xtol, gtol = self.resolved_tolerances(n_points)
        return self.with_overrides(ftol=ftol, xtol=xtol, gtol=gtol)

    def with_goal_defaults(self) -> WorkflowConfig:
        """Copy with the goal's modifiers applied to fields still at defaults.

        ROBUST and GLOBAL turn on multi-start with 5 and 20 starts when
        ``enable_multistart`` is False and ``n_starts`` is the default; QUALITY
        sets 3 validation passes when ``validation_passes`` is 0. Tolerance
        shifts are applied by :meth:`with_adaptive_tolerances` instead.
        """
        default = WorkflowConfig()
        kw: dict[str, Any] = {}
        starts = {OptimizationGoal.ROBUST: 5, OptimizationGoal.GLOBAL: 20}
        if self.goal in starts and not self.enable_multistart and self.n_starts == default.n_starts:
            kw.update(enable_multistart=True, n_starts=starts[self.goal])
        if self.goal is OptimizationGoal.QUALITY and self.validation_passes == 0:
            kw["validation_passes"] = 3
        return dataclasses.replace(self, **kw) if kw else self


def _validate_cluster(cluster: object) -> dict:
    if not isinstance(cluster, dict):
        raise TypeError(f"cluster must be a dict; got {type(cluster).__name__} {cluster!r}")
    out = {}
    for key, value in cluster.items():
        if key not in CLUSTER_KEYS:
            raise ValueError(
                f"unknown cluster key {key!r}; valid keys are: {', '.join(CLUSTER_KEYS)}"
            )
        if key in _CLUSTER_INT_KEYS and value is not None:
            lo = 0 if key == "gpus_per_node" else 1
            if not _is_int(value) or value < lo:
                raise ValueError(f"cluster {key} must be an integer >= {lo}; got {value!r}")
            value = int(value)
        if key == "type":
            t = value.strip().lower() if isinstance(value, str) else None
            if t not in CLUSTER_TYPES:
                valid = ", ".join(repr(c) for c in CLUSTER_TYPES)
                raise ValueError(f"cluster type={value!r} is not valid; expected one of {valid}")
            value = t
        out[key] = value
    return out
