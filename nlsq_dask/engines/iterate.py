"""The Levenberg–Marquardt loop on the host: a pass, a step, until done.

An *evaluator* returns the statistics at a trial point (one kernel call on in-memory
data, or a dask pass over the partitions), and the jitted
:func:`~nlsq_dask.solver.lm_step` takes the step. The step does not depend on the
model, so it is compiled once per parameter count and reduction and reused by every
model (and, through the persistent compilation cache, by every process). Every tier
runs this loop: :func:`iterate` for one start (history, progress, checkpoints),
:func:`batch_passes` for several starts sharing each pass (multi-start, tournament
rounds on subsets of partitions, validation restarts).
"""

from __future__ import annotations

import logging
import sys
import time
from functools import lru_cache, partial
from typing import Callable, NamedTuple, Protocol

import numpy as np

from .outputs import EngineOutput

log = logging.getLogger("nlsq_dask")


class Evaluator(Protocol):
    """The statistics of a fit's data at trial parameters: what the LM loop iterates on.

    ``evaluator(params, parts=None)`` with ``params`` of shape ``(p,)`` or ``(S, p)``
    (several starts in one read) returns the statistics (of type
    ``evaluator.problem.stats``; with ``parts``, of those partitions only). Implemented
    in memory (:class:`~nlsq_dask.engines.in_memory.InMemoryEvaluator`) and by dask
    passes (:class:`~nlsq_dask.engines.dask_engine.PassRunner`, which also stores and
    reuses finished partitions, ``checkpointed``).
    """

    problem: object
    n_partitions: int

    def __call__(self, params, parts=None): ...


class LMPrograms(NamedTuple):
    """The jitted LM step in its three parts (see :func:`~nlsq_dask.solver.lm.lm_consume`),
    for one start or, ``batched``, a leading axis of starts. The state stays on the
    device between passes: the loops read only a few scalars of it (:class:`Head`)."""

    start: Callable
    consume: Callable
    propose_where: Callable

    def init(self, x0, stats, opts):
        """The state at ``x0`` with its first trial proposed."""
        state = self.start(x0, stats, opts)
        return self.propose_where(np.ones(np.shape(state.done), bool), state, opts)

    def step(self, state, stats, opts):
        """One :func:`~nlsq_dask.solver.lm_step` (dispatched; nothing waits for it)."""
        state, propose = self.consume(state, stats, opts)
        return self.propose_where(propose, state, opts)


class Head(NamedTuple):
    """What the host loop reads of a state after each pass (one transfer)."""

    done: np.ndarray
    accepted: np.ndarray
    nit: np.ndarray
    nfev: np.ndarray
    cost: np.ndarray
    last_step_norm: np.ndarray

    @classmethod
    def of(cls, state) -> "Head":
        import jax

        return cls(*jax.device_get(tuple(getattr(state, f) for f in cls._fields)))


@lru_cache(maxsize=None)
def lm_programs(stats_type: type, batched: bool = False) -> LMPrograms:
    """The LM step on statistics of type ``stats_type``, compiled once a process (and kept
    by the persistent compilation cache): it does not depend on the model."""
    import jax

    from ..solver.compile_options import jit_small
    from ..solver.lm import lm_consume, lm_propose_where, lm_start

    propose = partial(lm_propose_where, stats_type=stats_type)
    fns = (lm_start, lm_consume, propose)
    if batched:
        fns = (jax.vmap(lm_start, in_axes=(0, 0, None)), jax.vmap(lm_consume, in_axes=(0, 0, None)),
               jax.vmap(propose, in_axes=(0, 0, None)))
    return LMPrograms(*[jit_small(f) for f in fns])


class ProgressLine:
    """One line per pass to the log; with ``show`` also a live line on stderr."""

    def __init__(self, show: bool, n_points: int):
        self.show, self.n_points, self.t0 = show, n_points, time.perf_counter()

    def __call__(self, state, pass_seconds: float):
        rate = self.n_points / pass_seconds if pass_seconds > 0 else float("inf")
        msg = (f"pass {int(state.nfev):3d} | iter {int(state.nit):3d} | cost {float(state.cost):.6e} "
               f"| step {float(state.last_step_norm):.3e} | {rate / 1e6:8.2f} Mpts/s")
        log.info(msg)
        if self.show:  # one live line on a terminal, a line per pass in a log file
            sys.stderr.write(("\r" if sys.stderr.isatty() else "") + msg
                             + ("" if sys.stderr.isatty() else "\n"))
            sys.stderr.flush()

    def close(self):
        if self.show and sys.stderr.isatty():
            sys.stderr.write("\n")


def iterate(evaluator, x0, opts, n_points: int, progress: bool = False,
            ckpt=None) -> EngineOutput:
    """Levenberg–Marquardt from ``x0``: one :func:`~nlsq_dask.solver.lm_step` per pass of
    ``evaluator`` (the statistics at a trial point), until the state is done.

    Parameters
    ----------
    evaluator : Evaluator
        The statistics at trial points; with ``ckpt`` also ``checkpointed`` and a
        ``ledger`` (the dask :class:`~nlsq_dask.engines.dask_engine.PassRunner`).
    x0, opts
        Start and :class:`~nlsq_dask.solver.LMOptions`.
    n_points : int
        For the progress line's rate.
    progress : bool
        A line per pass on stderr (always logged).
    ckpt : FitCheckpoint, optional
        Store the state every ``checkpoint_frequency`` passes and resume a stored one.
    """
    import jax

    from ..solver import LMState

    lm = lm_programs(evaluator.problem.stats)
    show = ProgressLine(progress, n_points)
    computed = 0

    def run_pass(params, nfev):
        nonlocal computed
        if ckpt is None:
            computed += evaluator.n_partitions
            return evaluator(params)
        stats, n = evaluator.checkpointed(params, ckpt.store, ckpt.pass_key(nfev, params))
        computed += n
        ckpt.save_summaries(evaluator.ledger)
        return stats

    t0 = time.perf_counter()
    loaded = ckpt.load(LMState) if ckpt is not None else None
    if loaded is not None:
        state, history = loaded
        if bool(state.done) and int(state.nfev) < int(opts.max_nfev) and (
                int(state.status) == 0 or _tighter(ckpt.tolerances, ckpt.stored_tolerances)):
            # stopped by an earlier pass budget, or converged by looser tolerances than
            # this run's: the next trial is already proposed, go on
            state = state._replace(done=np.bool_(False), status=np.int64(0))
        resumed_at = int(state.nfev)
        log.info("resuming %s at pass %d", ckpt.path, resumed_at)
    else:
        tp = time.perf_counter()
        state = lm.init(x0, run_pass(x0, 0), opts)
        head = Head.of(state)
        show(head, time.perf_counter() - tp)
        history, resumed_at = [_entry(head, state.x, t0)], None
        if ckpt is not None:
            ckpt.save(jax.device_get(state), history, force=True)
    head = Head.of(state)
    while not bool(head.done):
        tp = time.perf_counter()
        stats = run_pass(state.x_trial, int(head.nfev))
        state = lm.step(state, stats, opts)
        head = Head.of(state)
        show(head, time.perf_counter() - tp)
        if bool(head.accepted) and int(head.nit) > history[-1]["iteration"]:
            history.append(_entry(head, state.x, t0))
        if ckpt is not None:
            ckpt.save(jax.device_get(state), history, force=bool(head.done))
    show.close()
    state = jax.device_get(state)
    extras = {"n_partitions": evaluator.n_partitions, "partitions_computed": computed}
    if ckpt is not None:
        extras["checkpoint"] = {"path": ckpt.path, "resumed": resumed_at is not None,
                                "resumed_at_pass": resumed_at}
    return EngineOutput(state, history, time.perf_counter() - t0, extras)


def _tighter(new, old) -> bool:
    """Whether any of the tolerances ``new`` is tighter than the stored ``old``."""
    return old is not None and any(a < b for a, b in zip(new, old))


def _entry(head: Head, x, t0: float) -> dict:
    return dict(iteration=int(head.nit), cost=float(head.cost),
                params=np.asarray(x).tolist(), nfev=int(head.nfev),
                step_norm=float(head.last_step_norm),
                elapsed=time.perf_counter() - t0, elapsed_estimated=False)


def batch_passes(runner, x0s, opts, parts=None, max_passes=None, patience=None):
    """Iterate all starts together, one shared read per pass: ``(state, passes)``.

    With ``patience``, stop once the remaining starts have had ``patience`` times the
    passes the first converged start needed and none of them is below the best
    converged cost (an LM cost never rises, so such a start could still win).
    """
    import jax

    lm = lm_programs(runner.problem.stats, batched=True)
    state = jax.device_get(lm.init(np.asarray(x0s), runner(x0s, parts), opts))
    passes = 1

    def patience_over():
        done, cost = np.asarray(state.done), np.asarray(state.cost)
        ok = done & (np.asarray(state.status) > 0)
        if patience is None or not ok.any():
            return False
        promising = np.any(~done & (cost < np.min(cost[ok])))
        return passes >= patience * np.min(state.nfev[ok]) + 2 and not promising

    while not np.all(state.done) and (max_passes is None or passes < max_passes) \
            and not patience_over():
        state = jax.device_get(lm.step(state, runner(state.x_trial, parts), opts))
        passes += 1
    return state, passes


