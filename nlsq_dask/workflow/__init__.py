"""Workflow layer (L0): tiers, goals, configuration, presets, resources, selection.

Importing this package never imports jax, dask, distributed, xarray or zarr.
"""

from .cluster_detection import ClusterDetector, ClusterInfo
from .config import WorkflowConfig
from .enums import (
    DatasetSizeTier,
    MemoryTier,
    OptimizationGoal,
    WorkflowTier,
    adaptive_tolerance,
    calculate_adaptive_tolerances,
    parse_enum,
)
from .loading import (
    get_custom_workflow,
    get_env_overrides,
    load_config_with_overrides,
    load_yaml_config,
    resolve_config,
    validate_custom_workflow,
    yaml_to_overrides,
)
from .presets import DEPRECATED_PRESET_ALIASES, NLSQ_PRESETS, WORKFLOW_PRESETS
from .resources import ResourceSnapshot, get_memory_tier, get_total_available_memory_gb
from .selector import DatasetProfile, Selection, WorkflowSelector, auto_select_workflow

__all__ = [
    "WorkflowTier",
    "OptimizationGoal",
    "DatasetSizeTier",
    "MemoryTier",
    "WorkflowConfig",
    "WORKFLOW_PRESETS",
    "NLSQ_PRESETS",
    "DEPRECATED_PRESET_ALIASES",
    "WorkflowSelector",
    "Selection",
    "DatasetProfile",
    "ResourceSnapshot",
    "auto_select_workflow",
    "get_total_available_memory_gb",
    "get_memory_tier",
    "ClusterInfo",
    "ClusterDetector",
    "load_yaml_config",
    "yaml_to_overrides",
    "get_env_overrides",
    "resolve_config",
    "load_config_with_overrides",
    "get_custom_workflow",
    "validate_custom_workflow",
    "adaptive_tolerance",
    "calculate_adaptive_tolerances",
    "parse_enum",
]
