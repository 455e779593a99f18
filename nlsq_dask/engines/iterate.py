"""The Levenberg–Marquardt loop on the host: a pass, a step, until done.

An *evaluator* returns the statistics at a trial point (one kernel call on in-memory
data, or a dask pass over the partitions), and the jitted
LM step (:func:`~nlsq_dask.solver.lm_consume`, then
:func:`~nlsq_dask.solver.lm_propose`) takes the step. The step does not depend on the
model, so it is compiled once per parameter count and reduction and reused by every
model (and, through the persistent compilation cache, by every process).

Every tier and every kind of run goes through the one loop, :func:`iterate`, with
:class:`Hook` objects for what differs: a fit's start (:func:`fit_start`) adds its
:class:`History`, :class:`ProgressLine` and :class:`CheckpointSaves` (its passes then
run through a :class:`CheckpointingEvaluator`); several starts sharing each pass
(multi-start, tournament rounds on subsets of partitions, validation restarts,
:func:`batch_passes`) a :class:`PassBudget` and :class:`Patience`.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache, partial
from typing import Callable, NamedTuple, Protocol

import numpy as np

from .hooks import Head, Hook
from .outputs import EngineOutput
from .progress import Progress

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
        """One step: consume the statistics, propose where due (dispatched; nothing waits
        for it)."""
        state, propose = self.consume(state, stats, opts)
        return self.propose_where(propose, state, opts)


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


def iterate(evaluator, start, opts, hooks=(), parts=None):
    """The Levenberg–Marquardt loop of every tier: a pass of ``evaluator``, a step, until
    every start is done or a hook stops it. Returns ``(state, passes)``, the state on
    the host.

    Parameters
    ----------
    evaluator : Evaluator
        The statistics at trial points.
    start : array or LMState
        ``x0`` of shape ``(p,)``, or ``(S, p)`` for ``S`` starts sharing every pass; or a
        state to go on from (a resumed checkpoint), which costs no start pass.
    opts : LMOptions
    hooks : sequence of Hook
        History, progress, checkpoint saves, patience, a pass budget.
    parts : sequence of int, optional
        Evaluate only these partitions (tournament rounds).
    """
    import jax

    from ..solver import LMState

    resumed = isinstance(start, LMState)
    lm = lm_programs(evaluator.problem.stats, np.ndim(start.x if resumed else start) == 2)

    def after(state, t0):
        head = Head.of(state)
        stops = [h.after_pass(state, head, time.perf_counter() - t0) for h in hooks]
        return head, any(stops)

    passes, stop = 0, False
    if resumed:
        state, head = start, Head.of(start)
    else:
        t0 = time.perf_counter()
        state = lm.init(start, evaluator(start, parts), opts)
        passes = 1
        head, stop = after(state, t0)
    while not stop and not np.all(head.done):
        t0 = time.perf_counter()
        state = lm.step(state, evaluator(state.x_trial, parts), opts)
        passes += 1
        head, stop = after(state, t0)
    state = jax.device_get(state)
    for h in hooks:
        h.close(state)
    return state, passes


class History(Hook):
    """The accepted iterates (iteration, cost, parameters, passes and time so far) of one
    start, or, with ``n_starts``, of each start of a batch (``entries`` is then a list per
    start)."""

    def __init__(self, entries=None, n_starts=None):
        self.t0 = time.perf_counter()
        self.entries = list(entries or []) if n_starts is None else [[] for _ in range(n_starts)]
        self.batched = n_starts is not None

    def after_pass(self, state, head, seconds):
        starts = [(self.entries, head)] if not self.batched else [
            (e, Head(*[a[i] for a in head])) for i, e in enumerate(self.entries)]
        x = None
        for i, (entries, h) in enumerate(starts):
            if entries and not (bool(h.accepted) and int(h.nit) > entries[-1]["iteration"]):
                continue
            x = np.asarray(state.x) if x is None else x     # one transfer, and only if needed
            entries.append(dict(
                iteration=int(h.nit), cost=float(h.cost),
                params=(x[i] if self.batched else x).tolist(), nfev=int(h.nfev),
                step_norm=float(h.last_step_norm),
                elapsed=time.perf_counter() - self.t0, elapsed_estimated=False))
        return False


class CheckpointSaves(Hook):
    """The state and history stored every ``checkpoint_frequency`` passes (and the first
    and last)."""

    def __init__(self, ckpt, history: History, first_forced: bool):
        self.ckpt, self.history, self.force = ckpt, history, first_forced

    def after_pass(self, state, head, seconds):
        import jax

        self.ckpt.save(jax.device_get(state), self.history.entries,
                       force=self.force or bool(head.done))
        self.force = False
        return False


class CheckpointingEvaluator:
    """A dask pass runner whose passes store each finished partition in the checkpoint
    and reuse stored ones (:meth:`~nlsq_dask.engines.dask_engine.PassRunner.checkpointed`);
    the data summaries are stored after each pass."""

    def __init__(self, runner, ckpt, nfev: int):
        self.runner, self.ckpt, self.nfev, self.computed = runner, ckpt, nfev, 0
        self.problem, self.n_partitions = runner.problem, runner.n_partitions

    @property
    def on_partition(self):
        return self.runner.on_partition

    @on_partition.setter
    def on_partition(self, listener):
        self.runner.on_partition = listener

    def __call__(self, params, parts=None):
        if parts is not None:     # a subset pass has no place in a fit's stored passes
            raise ValueError("checkpointed passes read every partition; parts must be None")
        params = np.asarray(params)
        stats, n = self.runner.checkpointed(params, self.ckpt.store,
                                            self.ckpt.pass_key(self.nfev, params))
        self.nfev += 1
        self.computed += n
        self.ckpt.save_summaries(self.runner.ledger)
        return stats


class PassBudget(Hook):
    """Stop after ``max_passes`` passes."""

    def __init__(self, max_passes: int):
        self.max_passes, self.passes = max_passes, 0

    def after_pass(self, state, head, seconds):
        self.passes += 1
        return self.passes >= self.max_passes


class Patience(Hook):
    """Several starts: stop once the remaining starts have had ``patience`` times the
    passes the first converged start needed and none of them is below the best converged
    cost (an LM cost never rises, so such a start could still win)."""

    def __init__(self, patience: float):
        self.patience, self.passes = patience, 0

    def after_pass(self, state, head, seconds):
        self.passes += 1
        done, cost = np.asarray(head.done), np.asarray(head.cost)
        ok = done & (np.asarray(head.status) > 0)
        if not ok.any():
            return False
        promising = np.any(~done & (cost < np.min(cost[ok])))
        return self.passes >= self.patience * np.min(np.asarray(head.nfev)[ok]) + 2 \
            and not promising


def fit_start(evaluator, x0, opts, n_points: int, progress: Progress | None = None,
              ckpt=None, prior: float = 0.0) -> EngineOutput:
    """One start of a fit, from ``x0`` to done: :func:`iterate` with a history, the
    hooks of ``progress`` (a progress line, always logged, shown if asked; the user's
    callback) and, with ``ckpt``, checkpoint saves, checkpointed passes and the resume
    of a stored fit. A dask evaluator reports its partitions to the progress line as
    they finish.

    Parameters
    ----------
    evaluator : Evaluator
        The statistics at trial points; with ``ckpt`` a dask
        :class:`~nlsq_dask.engines.dask_engine.PassRunner`.
    x0, opts
        Start and :class:`~nlsq_dask.solver.LMOptions`.
    n_points : int
        For the progress line's rate.
    progress : Progress, optional
        Default: log the passes, show nothing.
    ckpt : FitCheckpoint, optional
        Store the state every ``checkpoint_frequency`` passes and resume a stored one.
    prior : float
        Full-pass equivalents read before this start (subset passes), for the progress
        line.
    """
    from ..solver import LMState

    t0 = time.perf_counter()
    start, history, resumed_at = x0, History(), None
    loaded = ckpt.load(LMState) if ckpt is not None else None
    if loaded is not None:
        state, entries = loaded
        if bool(state.done) and int(state.nfev) < int(opts.max_nfev) and (
                int(state.status) == 0 or _tighter(ckpt.tolerances, ckpt.stored_tolerances)):
            # stopped by an earlier pass budget, or converged by looser tolerances than
            # this run's: the next trial is already proposed, go on
            state = state._replace(done=np.bool_(False), status=np.int64(0))
        start, history, resumed_at = state, History(entries), int(state.nfev)
        log.info("resuming %s at pass %d", ckpt.path, resumed_at)
    watchers = (progress or Progress()).hooks(n_points, evaluator.n_partitions, prior)
    hooks = [history, *watchers]
    if ckpt is not None:
        evaluator = CheckpointingEvaluator(evaluator, ckpt, resumed_at or 0)
        hooks.append(CheckpointSaves(ckpt, history, first_forced=loaded is None))
    shown = watchers[0].show and hasattr(evaluator, "on_partition")
    if shown:                             # a pass then tracks its partitions
        evaluator.on_partition = watchers[0].partition_done
    try:
        state, passes = iterate(evaluator, start, opts, hooks)
    finally:
        if shown:
            evaluator.on_partition = None
    if any(getattr(h, "stopped", False) for h in watchers):
        from ..solver import Status

        state = state._replace(status=np.int64(Status.CALLBACK), done=np.bool_(True))
    computed = evaluator.computed if ckpt is not None else passes * evaluator.n_partitions
    extras = {"n_partitions": evaluator.n_partitions, "partitions_computed": computed}
    if ckpt is not None:
        extras["checkpoint"] = {"path": ckpt.path, "resumed": resumed_at is not None,
                                "resumed_at_pass": resumed_at}
    return EngineOutput(state, history.entries, time.perf_counter() - t0, extras)


def _tighter(new, old) -> bool:
    """Whether any of the tolerances ``new`` is tighter than the stored ``old``."""
    return old is not None and any(a < b for a, b in zip(new, old))


def batch_passes(runner, x0s, opts, parts=None, max_passes=None, patience=None):
    """All starts ``x0s`` together, one shared read per pass: ``(state, passes)``, with
    an optional pass budget and :class:`Patience`."""
    hooks = ([PassBudget(max_passes)] if max_passes is not None else []) + (
        [Patience(patience)] if patience is not None else [])
    return iterate(runner, np.asarray(x0s), opts, hooks, parts)
