"""STANDARD tier: data on one device, the host loop of :mod:`~nlsq_dask.engines.iterate`.

The data are materialised and padded once; each pass is one call of the jitted
statistics kernel (the same kernel a dask partition runs,
:func:`~nlsq_dask.engines.partitions.stats_kernel`) and each step one call of the
model-independent LM step. Only the small kernel is compiled per model, so a new
model, a new data length or a redefined model costs a fraction of a second, and the
step is compiled once per parameter count (and kept by the persistent compilation
cache across processes). Measured against the whole loop jitted in one
``lax.while_loop`` (``benchmarks/first_fit.py``, ``benchmarks/in_memory.py``): the
same warm speed at 10^6 and 10^7 points, a few milliseconds more at 10^4, and
seconds less for every new model.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from .iterate import History, fit_start, iterate
from .outputs import EngineOutput
from .partitions import padded_length, stats_kernel


def pad_to(a: np.ndarray, length: int, value=0.0) -> np.ndarray:
    """``a`` extended along its last axis to ``length`` with ``value`` (``a`` itself when
    it is that long already)."""
    n = a.shape[-1]
    if n == length:
        return a
    out = np.empty(a.shape[:-1] + (length,), a.dtype)
    out[..., :n] = a
    out[..., n:] = value
    return out


# padded lengths compiled so far, per problem key and weighting (the shapes
# a new length may reuse: see padded_length)
_LENGTHS: dict = {}


class InMemoryEvaluator:
    """The statistics of materialised data ``(xs, y, w)`` at trial parameters.

    ``evaluator(params)`` with ``params`` of shape ``(p,)`` or ``(S, p)`` (several
    starts evaluated together) is one call of the jitted kernel on device-resident
    arrays. ``cov_factor`` (the Cholesky factor of a full covariance of ``y``) whitens
    the residuals instead of weights ``w``; then nothing is padded.
    """

    n_partitions = 1

    def __init__(self, problem, data, *, cov_factor=None):
        import jax

        xs, y, w = data
        n = int(y.shape[0])
        self.n_points, self.problem = n, problem
        f_scale = problem.f_scale
        if cov_factor is None:
            lengths = _LENGTHS.setdefault((problem.key, w is None), set())
            self.tile, length = padded_length(n, lengths)
            lengths.add(length)
            arrays = (tuple(pad_to(np.asarray(x, np.float64), length) for x in xs),
                      pad_to(np.asarray(y, np.float64), length),
                      None if w is None else pad_to(np.asarray(w, np.float64), length, 1.0))
            self._args = (*jax.device_put(arrays), np.int64(n), np.float64(f_scale))
        else:
            self.tile = None
            arrays = (tuple(np.asarray(x, np.float64) for x in xs), np.asarray(y, np.float64),
                      np.asarray(cov_factor, np.float64))
            self._args = (*jax.device_put(arrays), np.float64(f_scale))

        self._kernels = {}

    def kernel(self, batched: bool):
        """The jitted kernel for one start or a batch of starts (looked up once)."""
        if batched not in self._kernels:
            self._kernels[batched] = (
                whitened_kernel(self.problem.key, batched) if self.tile is None else
                stats_kernel(self.problem.spec, self.problem, self.tile, batched, summary=False))
        return self._kernels[batched]

    def __call__(self, params, parts=None):
        import jax.numpy as jnp

        params = jnp.asarray(params, jnp.float64)      # a trial stays on the device
        return self.kernel(params.ndim == 2)(params, *self._args)


@lru_cache(maxsize=None)
def whitened_kernel(key: tuple, batched: bool):
    """The jitted :func:`~nlsq_dask.solver.stats.whitened_stats` (a full covariance) of
    a problem's :attr:`~nlsq_dask.solver.problem.Problem.key`."""
    import jax

    from ..solver.compile_options import jit_kernel
    from ..solver.stats import whitened_stats

    spec, loss, stats_type = key

    def stats(params, xs, y, L, f_scale):
        return whitened_stats(spec, loss, stats_type, L, params, xs, y, f_scale)

    return jit_kernel(jax.vmap(stats, in_axes=(0, None, None, None, None)) if batched else stats)


def run_in_memory(evaluator: InMemoryEvaluator, x0, opts, progress=None) -> EngineOutput:
    """Fit the data of ``evaluator`` from ``x0``.

    ``x0`` of shape ``(S, p)`` runs ``S`` starts together, one kernel call per pass
    for all of them; the state then has a leading axis of starts and the history is a
    list per start. Non-finite points left in the data (only possible for lazy inputs)
    are skipped by the kernel. ``progress`` (a
    :class:`~nlsq_dask.engines.progress.Progress`) watches a single start.
    """
    x0 = np.asarray(x0, np.float64)
    if x0.ndim == 2:
        t0 = time.perf_counter()
        history = History(n_starts=x0.shape[0])
        state, _ = iterate(evaluator, x0, opts, [history])
        return EngineOutput(state, history.entries, time.perf_counter() - t0)
    out = fit_start(evaluator, x0, opts, evaluator.n_points, progress)
    return EngineOutput(out.state, out.history, out.elapsed)


def materialise(inputs):
    """``(xs, y, w)`` as numpy arrays (``w`` None without σ), computing dask inputs in one go."""
    arrays = [*inputs.xs, inputs.y] + ([inputs.sigma] if inputs.sigma is not None else [])
    if inputs.lazy:
        from .fusion import load

        arrays = load(arrays)
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    k = inputs.n_inputs
    xs, y = tuple(arrays[:k]), arrays[k]
    with np.errstate(divide="ignore"):  # sigma = 0 gives w = inf, refused by the checks
        w = 1.0 / arrays[k + 1] if inputs.sigma is not None else None
    return xs, y, w
