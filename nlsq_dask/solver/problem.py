"""A fit's problem: the model, the robust loss and the statistics type, as one value."""

from __future__ import annotations

from dataclasses import dataclass

from .model import ModelSpec
from .stats import NormalStats, stats_type


@dataclass(frozen=True)
class Problem:
    """What a fit minimises, apart from its data and its stopping options.

    Parameters
    ----------
    spec : ModelSpec
        The model and how it is called (equal when it computes the same thing).
    loss : str or CustomLoss
        The robust loss (``'linear'``, ``'soft_l1'``, ...).
    f_scale : float
        The loss's soft margin.
    stats : type
        :class:`~nlsq_dask.solver.NormalStats` or :class:`~nlsq_dask.solver.QRStats`: how
        a pass's statistics are reduced (``reduction='normal'`` / ``'qr'``).

    Compiled kernels are keyed on :attr:`key`, which leaves ``f_scale`` out: it reaches
    them as a value, so another margin does not recompile.
    """

    spec: ModelSpec
    loss: object = "linear"
    f_scale: float = 1.0
    stats: type = NormalStats

    @classmethod
    def from_config(cls, spec: ModelSpec, config) -> "Problem":
        """The problem of ``spec`` under a :class:`~nlsq_dask.WorkflowConfig`."""
        return cls(spec, config.loss, float(config.f_scale), stats_type(config.reduction))

    @property
    def key(self) -> tuple:
        """What compiled code depends on: the model's identity, the loss, the statistics."""
        return (self.spec, self.loss, self.stats)

    @property
    def n_params(self) -> int:
        return self.spec.n_params
