"""nlsq_dask — out-of-core nonlinear least-squares curve fitting on dask, xarray and zarr.

``popt, pcov = nlsq_dask.fit(model, x, y, p0)`` with numpy, dask or xarray data; the
workflow names (tiers, goals, presets, selector) follow NLSQ's ``nlsq.workflow``.
Importing the package does not import JAX or dask; :func:`fit` does when called.
"""

from . import xarray as _xarray_accessor  # noqa: F401  (registers ds.nlsq / da.nlsq)
from .api import fit
from .errors import (CheckpointError, CovarianceWarning, DataChangedError, DataReadError,
                     FitWarning, InsufficientDataError, MissingChunksError, NotPointwiseError)
from .result import FitResult
from .scipy_compat import curve_fit
from .workflow import (WORKFLOW_PRESETS, ClusterDetector, ClusterInfo, DatasetSizeTier,
                       MemoryTier, OptimizationGoal, WorkflowConfig, WorkflowSelector,
                       WorkflowTier, auto_select_workflow, get_memory_tier,
                       get_total_available_memory_gb)

__version__ = "0.1.0"

__all__ = [
    "fit", "curve_fit", "FitResult", "FitWarning", "CovarianceWarning", "InsufficientDataError",
    "NotPointwiseError", "DataChangedError", "DataReadError", "MissingChunksError",
    "CheckpointError",
    "WORKFLOW_PRESETS", "ClusterDetector", "ClusterInfo",
    "DatasetSizeTier", "MemoryTier", "OptimizationGoal", "WorkflowConfig", "WorkflowSelector",
    "WorkflowTier", "auto_select_workflow", "get_memory_tier", "get_total_available_memory_gb",
]
