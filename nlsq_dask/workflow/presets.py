"""Named workflow presets: the spec's seven (``WORKFLOW_PRESETS``) and NLSQ's names.

Each entry of ``WORKFLOW_PRESETS`` is a plain dict: a ``description`` plus
:class:`WorkflowConfig` field overrides (enum fields as their string values, so the
table is JSON/YAML-safe). Tolerances are left to the adaptive table; the goal shifts
it (``fast`` one tier looser, ``quality`` one tier tighter).

NLSQ v0.5.3's other preset names (``NLSQ_PRESETS``: ``standard``, ``large_robust``,
...) are each the nearest of the seven (``based_on``; None: the defaults) plus the
start count, sampler and checkpointing NLSQ gives them. Its tier and tolerance pins
are not kept: here the selector picks the tier from the memory model and tolerances
follow the table. NLSQ's deprecated domain names (``DEPRECATED_PRESET_ALIASES``)
still work, with NLSQ's ``DeprecationWarning``, as the names they stand for.
"""

from __future__ import annotations

import warnings

__all__ = ["WORKFLOW_PRESETS", "NLSQ_PRESETS", "DEPRECATED_PRESET_ALIASES",
           "canonical_preset_name", "preset_overrides"]

WORKFLOW_PRESETS: dict[str, dict] = {
    "fast": {
        "description": "Minimum iterations, relaxed tolerances for quick results",
        "goal": "fast",
        "enable_multistart": False,
    },
    "robust": {
        "description": "Multi-start with 5 starting points for reliability",
        "goal": "robust",
        "enable_multistart": True,
        "n_starts": 5,
    },
    "global": {
        "description": "Thorough global search with 20 starting points",
        "goal": "global",
        "enable_multistart": True,
        "n_starts": 20,
    },
    "memory_efficient": {
        "description": "Aggressive chunking and streaming fallback",
        "goal": "memory_efficient",
    },
    "quality": {
        "description": "Tight tolerances with validation passes",
        "goal": "quality",
        "validation_passes": 3,
    },
    "hpc": {
        "description": "PBS Pro cluster configuration with checkpointing",
        "enable_checkpoints": True,
        "cluster": {"type": "pbs"},
    },
    "streaming": {
        "description": "Tournament selection for streaming data",
        "tier": "streaming",
        "enable_multistart": True,
        "n_starts": 10,
        "tournament": True,
    },
}

#: NLSQ v0.5.3's preset names that the spec does not list, as the nearest spec preset
#: (``based_on``) plus NLSQ's own start count, sampler and checkpointing
NLSQ_PRESETS: dict[str, dict] = {
    "standard": {
        "description": "Standard curve_fit() with default tolerances",
        "based_on": None,
        "enable_multistart": False,
        "n_starts": 0,
    },
    "large_robust": {
        "description": "Chunked processing with multi-start for large datasets",
        "based_on": "robust",
        "n_starts": 10,
    },
    "hpc_distributed": {
        "description": "Multi-GPU/node configuration for HPC clusters (PBS Pro)",
        "based_on": "hpc",
        "enable_multistart": True,
        "n_starts": 10,
    },
    "precision_high": {
        "description": "Maximum numerical precision with tight tolerances",
        "based_on": "quality",
        "enable_multistart": True,
        "n_starts": 15,
    },
    "precision_standard": {
        "description": "Standard numerical precision with default tolerances",
        "based_on": "robust",
        "n_starts": 10,
    },
    "streaming_large": {
        "description": "Large-scale streaming optimization with checkpointing",
        "based_on": "streaming",
        "enable_checkpoints": True,
    },
    "global_multimodal": {
        "description": "Global search for multimodal problems with Sobol sampling",
        "based_on": "global",
        "n_starts": 30,
        "sampler": "sobol",
    },
    "multimodal": {
        "description": "Problems with multiple local minima (multi-peak, phase)",
        "based_on": "global",
        "n_starts": 30,
        "sampler": "sobol",
    },
    "spectroscopy": {
        "description": "Optimized for peak fitting (Gaussian/Lorentzian/Voigt)",
        "based_on": "quality",
        "enable_multistart": True,
        "n_starts": 15,
    },
    "timeseries": {
        "description": "Long time series with streaming (oscillations, decay)",
        "based_on": "streaming",
        "enable_checkpoints": True,
    },
}

#: NLSQ v0.5.3's deprecated domain preset names and the names they stand for
DEPRECATED_PRESET_ALIASES: dict[str, str] = {
    "xpcs": "precision_standard",
    "saxs": "precision_standard",
    "kinetics": "precision_standard",
    "dose_response": "precision_high",
    "imaging": "streaming_large",
    "materials": "precision_standard",
    "binding": "precision_standard",
    "synchrotron": "streaming_large",
}

_ENTRY_KEYS = ("description", "based_on")


def canonical_preset_name(name: str, *, stacklevel: int = 2) -> str:
    """The preset ``name`` as its table key: lower case, an alias as its target.

    Parameters
    ----------
    name : str
        A name of ``WORKFLOW_PRESETS``, ``NLSQ_PRESETS`` or
        ``DEPRECATED_PRESET_ALIASES``, any case.
    stacklevel : int
        ``warnings.warn``'s stacklevel for the deprecation warning, counted from the
        caller of this function.

    Returns
    -------
    str

    Warns
    -----
    DeprecationWarning
        For a deprecated alias (as NLSQ does), naming the preset to use instead.

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If no preset has that name; the message lists the names.
    """
    if not isinstance(name, str):
        raise TypeError(f"preset must be a str; got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    if key in DEPRECATED_PRESET_ALIASES:
        new = DEPRECATED_PRESET_ALIASES[key]
        warnings.warn(f"Preset {name!r} is deprecated, use {new!r} instead "
                      f"(NLSQ v0.5.3's deprecated alias)", DeprecationWarning,
                      stacklevel=stacklevel + 1)
        key = new
    if key not in WORKFLOW_PRESETS and key not in NLSQ_PRESETS:
        valid = ", ".join(repr(k) for k in WORKFLOW_PRESETS)
        nlsq = ", ".join(repr(k) for k in (*NLSQ_PRESETS, *DEPRECATED_PRESET_ALIASES))
        raise ValueError(f"preset={name!r} is not a known preset; expected one of {valid} "
                         f"(or NLSQ's names {nlsq})")
    return key


def preset_overrides(name: str, *, stacklevel: int = 2) -> dict:
    """Field overrides of preset ``name`` (without its description).

    Parameters
    ----------
    name : str
        Preset name, case-insensitive: one of ``WORKFLOW_PRESETS``, of
        ``NLSQ_PRESETS`` (its ``based_on`` preset's overrides, then its own) or a
        deprecated alias (with a ``DeprecationWarning``).
    stacklevel : int
        As in :func:`canonical_preset_name`.

    Returns
    -------
    dict
        A fresh copy; safe to mutate.

    Raises
    ------
    ValueError
        If no preset has that name; the message lists the names.
    """
    key = canonical_preset_name(name, stacklevel=stacklevel + 1)
    entry = WORKFLOW_PRESETS.get(key) or NLSQ_PRESETS[key]
    base = entry.get("based_on")
    out = {} if base is None else preset_overrides(base)
    for k, v in entry.items():
        if k not in _ENTRY_KEYS:
            out[k] = dict(v) if isinstance(v, dict) else v
    return out
