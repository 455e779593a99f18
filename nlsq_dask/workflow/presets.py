"""Named workflow presets (``WORKFLOW_PRESETS``).

Each entry is a plain dict: a ``description`` plus :class:`WorkflowConfig`
field overrides (enum fields as their string values, so the table is
JSON/YAML-safe). Tolerances are left to the adaptive table; the goal shifts it
(``fast`` one tier looser, ``quality`` one tier tighter).
"""

from __future__ import annotations

__all__ = ["WORKFLOW_PRESETS", "preset_overrides"]

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


def preset_overrides(name: str) -> dict:
    """Field overrides of preset ``name`` (without its description).

    Parameters
    ----------
    name : str
        Preset name, case-insensitive.

    Returns
    -------
    dict
        A fresh copy; safe to mutate.

    Raises
    ------
    ValueError
        If no preset has that name; the message lists the names.
    """
    if not isinstance(name, str):
        raise TypeError(f"preset must be a str; got {type(name).__name__} {name!r}")
    key = name.strip().lower()
    if key not in WORKFLOW_PRESETS:
        valid = ", ".join(repr(k) for k in WORKFLOW_PRESETS)
        raise ValueError(f"preset={name!r} is not a known preset; expected one of {valid}")
    out = {}
    for k, v in WORKFLOW_PRESETS[key].items():
        if k != "description":
            out[k] = dict(v) if isinstance(v, dict) else v
    return out
