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
    parse_enum,
)
from .loading import get_env_overrides, load_yaml_config, resolve_config, yaml_to_overrides
from .presets import WORKFLOW_PRESETS
from .resources import ResourceSnapshot, get_memory_tier, get_total_available_memory_gb
from .selector import DatasetProfile, Selection, WorkflowSelector, auto_select_workflow

__all__ = [
    "WorkflowTier",
    "OptimizationGoal",
    "DatasetSizeTier",
    "MemoryTier",
    "WorkflowConfig",
    "WORKFLOW_PRESETS",
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
    "adaptive_tolerance",
    "parse_enum",
]
