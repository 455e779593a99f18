"""The solver core: pure JAX + numpy (no dask, xarray or zarr).

:mod:`~nlsq_dask.solver.stats` computes the statistics of a pass,
:mod:`~nlsq_dask.solver.lm` turns them into trust-region steps, and
:mod:`~nlsq_dask.solver.covariance` into ``pcov``. Per-pixel fits (many small problems
at once) run in :mod:`~nlsq_dask.solver.batched`, on the statistics of
:mod:`~nlsq_dask.solver.pixel_stats`.
"""

import jax

# Statistics are accumulated in float64; JAX needs to be told before any array exists.
jax.config.update("jax_enable_x64", True)

from .covariance import covariance
from .lm import (STATUS_MESSAGES, LMOptions, LMState, Status, lm_consume, lm_propose,
                 lm_propose_where, lm_start, make_options)
from .losses import LOSSES, check_loss
from .model import ModelSpec, infer_param_names
from .stats import (REDUCTIONS, STATS_TYPES, SUMMARY_FIELDS, NormalStats, QRStats, block_stats,
                    block_summary, stats_type)

__all__ = [
    "covariance", "STATUS_MESSAGES", "Status", "LMOptions", "LMState", "lm_start",
    "lm_consume", "lm_propose", "lm_propose_where", "make_options", "LOSSES", "check_loss",
    "ModelSpec", "infer_param_names", "REDUCTIONS", "SUMMARY_FIELDS", "NormalStats", "QRStats", "block_stats", "block_summary",
    "STATS_TYPES", "stats_type",
]
