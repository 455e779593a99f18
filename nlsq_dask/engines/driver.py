"""One configured fit: its problem, data and options (:class:`FitContext`), and one start.

Several starts and validation restarts are in :mod:`~nlsq_dask.engines.multistart`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..workflow import WorkflowTier
from .in_memory import InMemoryEvaluator, materialise, run_in_memory
from .invariants import check_materialised
from .outputs import EngineOutput


@dataclass
class FitContext:
    """One fit's problem, data, selection and options, shared by its runs (the fit,
    multi-start and validation)."""

    problem: object
    inputs: object
    selection: object
    opts: object
    lb: np.ndarray
    ub: np.ndarray
    max_nfev: int
    client: object = None
    progress: object = None          # a Progress: the progress line and callback
    engine_options: dict = field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        return self.selection.tier is WorkflowTier.STANDARD

    def data(self):
        """``(xs, y, w)`` materialised once per fit (the fit, multi-start and validation share it)."""
        if getattr(self, "_data", None) is None:
            self._data = materialise(self.inputs)
            if self.inputs.lazy:  # numpy inputs were checked up front
                check_materialised(*self._data, self.problem.n_params)
        return self._data

    def evaluator(self) -> InMemoryEvaluator:
        """The in-memory statistics of the whole data, on the device once per fit."""
        if getattr(self, "_evaluator", None) is None:
            self._evaluator = InMemoryEvaluator(self.problem, self.data(),
                                                cov_factor=self.inputs.cov_factor)
        return self._evaluator

    def run_in_memory(self, x0, data=None, opts=None) -> EngineOutput:
        """In memory from ``x0`` on the whole data, or on ``data`` (a subsample)."""
        evaluator = self.evaluator() if data is None else InMemoryEvaluator(self.problem, data)
        return run_in_memory(evaluator, x0, self.opts if opts is None else opts, self.progress)

    def runner(self):
        """The pass runner, built once per fit (CHUNKED persists its partitions here)."""
        if getattr(self, "_runner", None) is None:
            from .dask_engine import make_runner

            self._runner = make_runner(self.problem, self.inputs, self.selection, self.client)
        return self._runner

    def run_dask(self, x0, subsets: bool = True) -> EngineOutput:
        """A dask fit from ``x0``; ``subsets=False`` reads all the data from the first
        pass (the start is already the answer of subset passes)."""
        from .dask_engine import run_dask

        return run_dask(self.problem, x0=x0, inputs=self.inputs, selection=self.selection,
                        opts=self.opts, lb=self.lb, ub=self.ub, client=self.client,
                        progress=self.progress, runner=self.runner(), subsets=subsets,
                        **self.engine_options)


def run_single(ctx: FitContext, x0) -> EngineOutput:
    return ctx.run_in_memory(x0) if ctx.in_memory else ctx.run_dask(x0)


