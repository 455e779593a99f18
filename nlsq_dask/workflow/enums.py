"""Enumerations of the workflow layer and the adaptive tolerance table.

All enums are ``str``-valued with lowercase values, so they round-trip through
YAML and JSON (``WorkflowTier("chunked") is WorkflowTier.CHUNKED``). Use
:func:`parse_enum` to parse user input case-insensitively with a clear error.

Dataset size tiers (lower edge inclusive)::

    n < 1_000                    TINY        1e-12
    1_000 <= n < 10_000          SMALL       1e-10
    10_000 <= n < 100_000        MEDIUM      1e-8
    100_000 <= n < 1_000_000     LARGE       1e-7
    1_000_000 <= n < 10_000_000  VERY_LARGE  1e-6
    n >= 10_000_000              MASSIVE     1e-5

NLSQ's spellings work too: :meth:`OptimizationGoal.normalize`,
:attr:`DatasetSizeTier.max_points`, :attr:`MemoryTier.max_memory_gb` and
:attr:`MemoryTier.description`, :meth:`MemoryTier.from_available_memory_gb`,
:func:`calculate_adaptive_tolerances` (a dict) and ``DatasetSizeTier.HUGE`` (here
another name of MASSIVE: the table above has no tier between 10M and 100M points).
"""

from __future__ import annotations

import enum
import numbers
from typing import TypeVar

__all__ = [
    "WorkflowTier",
    "OptimizationGoal",
    "MemoryTier",
    "DatasetSizeTier",
    "parse_enum",
    "adaptive_tolerance",
    "calculate_adaptive_tolerances",
]

E = TypeVar("E", bound=enum.Enum)


class _StrEnum(str, enum.Enum):
    """String-valued enum whose ``str()`` is its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class WorkflowTier(_StrEnum):
    """Processing strategy.

    STANDARD
        Materialise the data once onto one device; each pass one kernel call.
    CHUNKED
        Persist partitions once; each pass maps a kernel over partitions and
        tree-reduces the statistics.
    STREAMING
        Re-read partitions from the source on every pass; memory O(partition).
    STREAMING_CHECKPOINT
        STREAMING plus zarr checkpoints of solver state and finished partitions.
    """

    STANDARD = "standard"
    CHUNKED = "chunked"
    STREAMING = "streaming"
    STREAMING_CHECKPOINT = "streaming_checkpoint"


class OptimizationGoal(_StrEnum):
    """Optimization objective shaping tolerances, multi-start and tiering.

    FAST loosens tolerances one tier; QUALITY tightens one tier and adds
    validation restarts; ROBUST and GLOBAL add multi-start (5 and 20 starts);
    MEMORY_EFFICIENT prefers streaming with small partitions.
    """

    FAST = "fast"
    ROBUST = "robust"
    GLOBAL = "global"
    MEMORY_EFFICIENT = "memory_efficient"
    QUALITY = "quality"

    @classmethod
    def normalize(cls, goal: OptimizationGoal | str | None) -> OptimizationGoal | None:
        """The goal with GLOBAL read as ROBUST, as NLSQ's ``OptimizationGoal.normalize``.

        GLOBAL and ROBUST share tolerances and tier selection; here GLOBAL's default
        start count is larger (20, ROBUST's 5), which this mapping does not keep.

        Parameters
        ----------
        goal : OptimizationGoal or str or None
            A member, or its value or name in any case.

        Returns
        -------
        OptimizationGoal or None
            ROBUST for GLOBAL, the goal itself otherwise; None for None.
        """
        if goal is None:
            return None
        goal = parse_enum(cls, goal, "goal")
        return cls.ROBUST if goal is cls.GLOBAL else goal


def parse_enum(cls: type[E], value: object, argname: str) -> E:
    """Parse ``value`` into a member of ``cls``, case-insensitively.

    Parameters
    ----------
    cls : type of Enum
        A string-valued enum class.
    value : str or member of ``cls``
        Member, value (``"chunked"``) or name (``"CHUNKED"``), any case.
    argname : str
        Argument name used in the error message.

    Returns
    -------
    member of ``cls``

    Raises
    ------
    ValueError
        If ``value`` names no member; the message lists the valid values.
    TypeError
        If ``value`` is neither a member nor a string.
    """
    if isinstance(value, cls):
        return value
    valid = ", ".join(repr(m.value) for m in cls)
    if not isinstance(value, str):
        raise TypeError(
            f"{argname} must be a {cls.__name__} or one of {valid}; "
            f"got {type(value).__name__} {value!r}"
        )
    key = value.strip().lower()
    for name, member in cls.__members__.items():     # names of aliases included
        if member.value == key or name.lower() == key:
            return member
    raise ValueError(f"{argname}={value!r} is not a valid {cls.__name__}; expected one of {valid}")


# value -> (upper bound exclusive in GB, NLSQ's description), in tier order
_MEMORY_TABLE = {
    "low": (16.0, "Constrained memory (<16GB)"),
    "medium": (64.0, "Standard memory (16-64GB)"),
    "high": (128.0, "High memory (64-128GB)"),
    "very_high": (float("inf"), "Very high memory (>128GB)"),
}


class MemoryTier(_StrEnum):
    """Coarse class of available memory.

    LOW < 16 GB <= MEDIUM < 64 GB <= HIGH < 128 GB <= VERY_HIGH.
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"

    @property
    def max_memory_gb(self) -> float:
        """Upper edge of the tier in GB (exclusive; ``inf`` for VERY_HIGH)."""
        return _MEMORY_TABLE[self.value][0]

    @property
    def description(self) -> str:
        """The tier in words, e.g. ``'Standard memory (16-64GB)'``."""
        return _MEMORY_TABLE[self.value][1]

    @classmethod
    def from_memory_gb(cls, gb: float) -> MemoryTier:
        """Classify ``gb`` gigabytes of memory (lower edges inclusive).

        Parameters
        ----------
        gb : float
            Memory in GB, non-negative.

        Returns
        -------
        MemoryTier
        """
        return cls._classify(gb, "gb")

    @classmethod
    def from_available_memory_gb(cls, available_memory_gb: float) -> MemoryTier:
        """Classify available memory, NLSQ's spelling of :meth:`from_memory_gb`.

        Parameters
        ----------
        available_memory_gb : float
            Memory in GB, non-negative.

        Returns
        -------
        MemoryTier
        """
        return cls._classify(available_memory_gb, "available_memory_gb")

    @classmethod
    def _classify(cls, gb: object, argname: str) -> MemoryTier:
        gb = _check_nonneg_number(gb, argname)
        for member in cls:
            if gb < member.max_memory_gb:
                return member
        return cls.VERY_HIGH


# (upper bound exclusive, tolerance) in tier order
_SIZE_TABLE = {
    "tiny": (1_000, 1e-12),
    "small": (10_000, 1e-10),
    "medium": (100_000, 1e-8),
    "large": (1_000_000, 1e-7),
    "very_large": (10_000_000, 1e-6),
    "massive": (float("inf"), 1e-5),
}


class DatasetSizeTier(_StrEnum):
    """Dataset size class with its default tolerance (see module docstring)."""

    TINY = "tiny"
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    VERY_LARGE = "very_large"
    MASSIVE = "massive"
    #: NLSQ's tier of 10M-100M points: here part of MASSIVE (the same member)
    HUGE = "massive"

    @classmethod
    def from_n_points(cls, n: int) -> DatasetSizeTier:
        """Classify a dataset of ``n`` points (lower edges inclusive).

        Parameters
        ----------
        n : int
            Number of data points, non-negative.

        Returns
        -------
        DatasetSizeTier
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n_points must be an integer; got {type(n).__name__} {n!r}")
        if n < 0:
            raise ValueError(f"n_points must be >= 0; got {n}")
        for member in cls:
            if n < member.max_points:
                return member
        return cls.MASSIVE  # pragma: no cover - inf bound

    @property
    def max_points(self) -> float:
        """Upper edge of the tier in points (exclusive; ``inf`` for MASSIVE)."""
        return _SIZE_TABLE[self.value][0]

    @property
    def tolerance(self) -> float:
        """Default ftol/xtol/gtol for this tier."""
        return _SIZE_TABLE[self.value][1]

    def shifted(self, steps: int) -> DatasetSizeTier:
        """Tier ``steps`` positions larger (looser), clamped at TINY/MASSIVE."""
        members = list(type(self))
        i = min(max(members.index(self) + steps, 0), len(members) - 1)
        return members[i]


def adaptive_tolerance(n_points: int, goal: OptimizationGoal | str | None = None) -> float:
    """Default tolerance for a dataset of ``n_points`` under ``goal``.

    Parameters
    ----------
    n_points : int
        Number of data points.
    goal : OptimizationGoal or str, optional
        QUALITY uses one tier tighter (clamped at TINY's 1e-12); FAST one
        tier looser (clamped at MASSIVE's 1e-5); other goals and None use the
        size tier's tolerance.

    Returns
    -------
    float
    """
    tier = DatasetSizeTier.from_n_points(n_points)
    if goal is not None:
        goal = parse_enum(OptimizationGoal, goal, "goal")
        if goal is OptimizationGoal.QUALITY:
            tier = tier.shifted(-1)
        elif goal is OptimizationGoal.FAST:
            tier = tier.shifted(+1)
    return tier.tolerance


def calculate_adaptive_tolerances(n_points: int, goal: OptimizationGoal | str | None = None
                                  ) -> dict[str, float]:
    """NLSQ's form of :func:`adaptive_tolerance`: the tolerance under each name.

    Parameters
    ----------
    n_points : int
        Number of data points.
    goal : OptimizationGoal or str, optional
        As in :func:`adaptive_tolerance` (QUALITY one tier tighter, FAST one looser).

    Returns
    -------
    dict
        ``{'gtol': t, 'ftol': t, 'xtol': t}``.
    """
    tol = adaptive_tolerance(n_points, goal)
    return {"gtol": tol, "ftol": tol, "xtol": tol}


def _check_nonneg_number(value: object, argname: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argname} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not value >= 0:  # also rejects NaN
        raise ValueError(f"{argname} must be a non-negative number; got {value!r}")
    return value
