"""nlsq_dask — out-of-core nonlinear least-squares curve fitting on dask, xarray and zarr.

``popt, pcov = nlsq_dask.fit(model, x, y, p0)`` with numpy, dask or xarray data; the
workflow names (tiers, goals, presets, selector) follow NLSQ's ``nlsq.workflow``.
Importing the package does not import JAX, dask, xarray or scipy.optimize; :func:`fit`
imports what it needs when called, and the ``.nlsq`` xarray accessor is registered when
xarray is imported (:mod:`nlsq_dask.registration`).
"""

from .api import fit
from .errors import (CheckpointError, DataChangedError, DataReadError, FitWarning,
                     InsufficientDataError, MissingChunksError, NotPointwiseError)
from .registration import register_accessor
from .result import FitResult
from .result_io import load_result
from .scipy_compat import curve_fit
from .workflow import (WORKFLOW_PRESETS, ClusterDetector, ClusterInfo, DatasetSizeTier,
                       MemoryTier, OptimizationGoal, WorkflowConfig, WorkflowSelector,
                       WorkflowTier, auto_select_workflow, get_memory_tier,
                       get_total_available_memory_gb)

__version__ = "0.1.0"

register_accessor()


def __getattr__(name: str):
    if name == "CovarianceWarning":      # made on first use (see nlsq_dask.errors)
        from . import errors

        return errors.CovarianceWarning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "fit", "curve_fit", "FitResult", "load_result", "FitWarning", "CovarianceWarning",
    "InsufficientDataError", "NotPointwiseError", "DataChangedError", "DataReadError",
    "MissingChunksError", "CheckpointError",
    "WORKFLOW_PRESETS", "ClusterDetector", "ClusterInfo",
    "DatasetSizeTier", "MemoryTier", "OptimizationGoal", "WorkflowConfig", "WorkflowSelector",
    "WorkflowTier", "auto_select_workflow", "get_memory_tier", "get_total_available_memory_gb",
]
