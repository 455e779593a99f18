"""CHUNKED and STREAMING tiers: one exact LM whose passes are dask graphs.

A pass maps :func:`~nlsq_dask.engines.partitions.block_task` over the partitions
and adds the results in a fixed tree of fan-in ``split_every``; the client reads
the small result and takes one LM step — the same code and loop as the STANDARD tier
(:mod:`~nlsq_dask.engines.iterate`). CHUNKED persists the inputs once (on the Client's
workers, or in local memory) and reuses them every pass;
STREAMING keeps the source lineage, so every pass re-reads the partitions (zarr)
and memory stays O(partition).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..workflow import WorkflowTier
from .invariants import PartitionLedger
from .iterate import fit_start
from .outputs import EngineOutput
from .sources import describe_sources
from .fusion import FusedReads
from .partitions import align_chunks, block_task, tile_for, unit_task
from .reduce import combine_task, reduce_parts, reduction_tree, unit_depth

log = logging.getLogger("nlsq_dask")
FLUSH_SECONDS = 2.0


def as_dask_arrays(inputs, partition_points: int, chunk_size: int | None):
    """The inputs as 1-D dask arrays with aligned chunks along the point axis.

    numpy inputs take ``chunk_size`` (else the selector's partition size) or, mixed
    with dask inputs, the chunks of the first dask array, so they need no rechunk.
    """
    import dask.array as da

    arrays = [*inputs.xs, inputs.y] + ([inputs.sigma] if inputs.sigma is not None else [])
    names = [f"x[{i}]" for i in range(inputs.n_inputs)] + ["y"] + (
        ["sigma"] if inputs.sigma is not None else [])
    target = None
    if chunk_size:
        target = da.core.normalize_chunks((int(chunk_size),), (inputs.n_points,))[0]
    elif not inputs.lazy:
        target = da.core.normalize_chunks((int(partition_points),), (inputs.n_points,))[0]
    reference = target or next(a.chunks[0] for a in arrays if hasattr(a, "dask"))
    arrays = [a if hasattr(a, "dask") else da.from_array(np.asarray(a), chunks=(reference,),
                                                          name=False) for a in arrays]
    return align_chunks(arrays, names, target)


class PassRunner:
    """Builds and runs one statistics pass per call.

    A pass is one task per *unit* — a partition, or, for partitions of a few points,
    ``split_every**depth`` consecutive ones (:func:`~nlsq_dask.engines.reduce.unit_depth`)
    — with the unit's reads fused in (:class:`~nlsq_dask.engines.fusion.FusedReads`),
    then the fixed reduction tree over the units. ``parts`` (subset passes) name units.
    """

    def __init__(self, problem, arrays, *, n_x: int, split_every: int, client=None,
                 source: str = "", require_finite: bool = False, depth: int | None = None):
        import dask

        spec = problem.spec
        self.problem, self.arrays, self.n_x = problem, arrays, n_x
        self.split_every = max(2, int(split_every))
        self.client = client
        self.chunks = arrays[0].chunks[0]
        self.max_block = int(max(self.chunks))
        self.tile = tile_for(self.max_block)
        # What the model computes (its jaxpr), stable across passes and processes:
        # workers cache their jitted kernel under it, and an edited model never hits it.
        self.token = dask.base.tokenize(spec.identity, spec.param_names, spec.x_form,
                                        spec.n_inputs, spec.x_lead)
        self.n_passes = 0
        #: called as ``on_partition(done, total)`` while a pass runs (the progress line)
        self.on_partition = None
        self.gpu = client is not None and workers_have_gpus(client)
        self.ledger = PartitionLedger(self.chunks, spec.n_params, source, require_finite)
        self.depth = unit_depth(self.chunks, self.split_every) if depth is None else int(depth)
        size, n = self.split_every ** self.depth, len(self.chunks)
        #: the partitions of each unit (consecutive; one task each in a pass)
        self.units = [range(j, min(j + size, n)) for j in range(0, n, size)]
        keys = [a.__dask_keys__() for a in arrays]
        self._unit_keys = [[k[i] for i in u for k in keys] for u in self.units]
        self._reads = None

    @property
    def n_partitions(self) -> int:
        return len(self.chunks)

    @property
    def n_units(self) -> int:
        return len(self.units)

    def partitions_of(self, units=None) -> np.ndarray:
        """The partition indices of ``units`` (default all), in order."""
        if units is None:
            return np.arange(self.n_partitions)
        return np.concatenate([np.arange(self.units[u].start, self.units[u].stop)
                               for u in units]).astype(np.int64)

    def _points_of(self, units) -> int:
        """Partitions in ``units`` (the progress line counts partitions)."""
        return sum(len(self.units[u]) for u in units)

    def fraction(self, units=None) -> float:
        """The share of the data's points in ``units`` (default all): a subset pass's cost
        in full passes."""
        if units is None:
            return 1.0
        chunks = np.asarray(self.chunks)
        return float(chunks[self.partitions_of(units)].sum() / chunks.sum())

    def reads(self) -> FusedReads:
        """The inputs' reads, fused into the units' tasks (worked out once per fit)."""
        if self._reads is None:
            self._reads = FusedReads(self.arrays, self._unit_keys)
        return self._reads

    def _block_layer(self, params: np.ndarray, tok: str, units=None):
        from dask._task_spec import Task

        stats_name = f"nlsq-stats-{tok}"
        reads = self.reads()
        units = range(self.n_units) if units is None else units
        n_arrays = len(self.arrays)
        if self.depth == 0:
            head = (block_task, self.token, self.problem, self.tile, self.max_block, params,
                    self.n_x)
        else:
            head = (unit_task, self.token, self.problem, self.tile, self.max_block,
                    self.split_every, self.depth, params, n_arrays, self.n_x)
        layer = {}
        for j, u in enumerate(units):
            layer[(stats_name, j)] = Task((stats_name, j), *head, reads.blocks(u))
        return stats_name, layer

    def _token(self, params: np.ndarray) -> str:
        import dask

        return dask.base.tokenize(self.token, params, self.n_passes)

    def graph(self, params: np.ndarray, parts=None):
        """``(HighLevelGraph, final key, layer name)`` of the pass at ``params``.

        ``params`` is ``(p,)`` or ``(S, p)`` (several starts in one read); ``parts``
        restricts the pass to those units (subset passes, tournament rounds).
        """
        from dask._task_spec import Task, TaskRef
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        params = np.asarray(params, dtype=np.float64)
        tok = self._token(params)
        stats_name, layer = self._block_layer(params, tok, parts)
        level = [(stats_name, j) for j in range(len(layer))]
        combine_name, combine = f"nlsq-combine-{tok}", {}
        for depth, groups in enumerate(reduction_tree(len(level), self.split_every)):
            nxt = []
            for j, g in enumerate(groups):
                key = (combine_name, depth, j)
                combine[key] = Task(key, combine_task, self.problem.stats,
                                    *[TaskRef(level[i]) for i in g])
                nxt.append(key)
            level = nxt
        hlg = self._with_inputs(stats_name, layer)
        if not combine:
            return hlg, level[0], stats_name
        layers = {**hlg.layers, combine_name: MaterializedLayer(combine)}
        deps = {**hlg.dependencies, combine_name: {stats_name}}
        return HighLevelGraph(layers, deps), level[0], combine_name

    def _with_inputs(self, stats_name: str, layer: dict):
        """The units' tasks on top of what they share (sources, persisted partitions);
        on GPU workers they need ``GPU=1``."""
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        annotations = {"resources": {"GPU": 1}} if self.gpu else None
        shared_name = f"nlsq-inputs-{self.token}-{id(self)}"
        layers = {shared_name: MaterializedLayer(self.reads().shared),
                  stats_name: MaterializedLayer(layer, annotations=annotations)}
        return HighLevelGraph(layers, {shared_name: set(), stats_name: {shared_name}})

    def _stats(self, out, parts=None):
        """The statistics of a pass's result, after checking its data summaries."""
        self.ledger.check(out[-1], None if parts is None else self.partitions_of(parts))
        return self.problem.stats(*[np.asarray(o) for o in out[:-1]])

    def __call__(self, params: np.ndarray, parts=None):
        from dask.delayed import Delayed

        hlg, key, layer = self.graph(params, parts)
        d = Delayed(key, hlg, layer=layer)
        if self.on_partition is not None:
            stats_name = next(name for name in hlg.layers if name.startswith("nlsq-stats-"))
            out = self._watched(d, hlg, stats_name,
                                list(range(self.n_units)) if parts is None else list(parts))
        else:
            out = self.client.compute(d, sync=True) if self.client is not None else d.compute()
        self.n_passes += 1
        return self._stats(out, parts)

    def _watched(self, d, hlg, stats_name: str, units: list):
        """Compute the pass ``d``, telling :attr:`on_partition` as its partitions finish."""
        listener, total = self.on_partition, self._points_of(units)
        sizes = [len(self.units[u]) for u in units]
        if self.client is not None:
            from dask.delayed import Delayed
            from distributed import as_completed

            blocks = [Delayed((stats_name, j), hlg, layer=stats_name) for j in range(len(units))]
            futures = self.client.compute([d, *blocks])
            index = {f.key: j for j, f in enumerate(futures[1:])}
            n_done = 0
            for fut in as_completed(futures[1:], loop=self.client.loop):
                n_done += sizes[index[fut.key]]
                listener(n_done, total)
            out = futures[0].result()
            del futures
            return out
        from dask.callbacks import Callback

        finished = [0]

        def posttask(key, result, dsk, state, worker_id):
            if isinstance(key, tuple) and key[0] == stats_name:
                finished[0] += sizes[key[1]]
                listener(finished[0], total)

        with Callback(posttask=posttask):
            return d.compute()

    def checkpointed(self, params: np.ndarray, store, pass_key: str):
        """A pass that stores each finished unit and reuses stored ones.

        Returns the statistics and the number of partitions computed in this call.
        Units finish into the store as they complete (with a Client, or one pool task
        each on local threads); the client then adds them along the same tree as
        :meth:`graph`, so the numbers are identical.
        """
        import dask
        from dask.delayed import Delayed

        params = np.asarray(params, dtype=np.float64)
        done = {i: tuple(v[f"s{j}"] for j in range(len(v)))
                for i, v in store.load_partitions(pass_key).items()}
        todo = [u for u in range(self.n_units) if u not in done]
        if todo:
            stats_name, layer = self._block_layer(params, self._token(params))
            hlg = self._with_inputs(stats_name, layer)
            delayed = {u: Delayed((stats_name, u), hlg, layer=stats_name) for u in todo}
            pending, last_flush = {}, [time.perf_counter()]
            n_done = [self.n_partitions - self._points_of(todo)]

            def keep(u, out, final=False):
                done[u] = tuple(np.asarray(o) for o in out)
                pending[u] = {f"s{j}": o for j, o in enumerate(done[u])}
                n_done[0] += len(self.units[u])
                if self.on_partition is not None:
                    self.on_partition(n_done[0], self.n_partitions)
                # Flush in batches at most every FLUSH_SECONDS: a crash loses at most that much
                # finished work, and writes stay a small fraction of a pass. After the last
                # unit nothing is flushed: the state saved after this pass covers it.
                if not final and time.perf_counter() - last_flush[0] >= FLUSH_SECONDS:
                    # checked before they are stored: a resume must not find data that
                    # differ from the fit's in its store
                    idx = sorted(pending)
                    self.ledger.check(np.concatenate([done[j][-1] for j in idx]),
                                      self.partitions_of(idx))
                    store.save_partitions(pass_key, dict(pending))
                    pending.clear()
                    last_flush[0] = time.perf_counter()

            if self.client is not None:
                from distributed import as_completed

                futures = self.client.compute([delayed[u] for u in todo])
                index = {f.key: u for f, u in zip(futures, todo)}
                finished = as_completed(futures, loop=self.client.loop, with_results=True)
                for i, (fut, out) in enumerate(finished, 1):
                    keep(index[fut.key], out, final=i == len(todo))
            else:
                # Local threads: one unit per pool task, kept as each completes
                # (no barrier between groups of units).
                from concurrent.futures import ThreadPoolExecutor, as_completed as done_first

                workers = dask.config.get("num_workers", None) or dask.system.CPU_COUNT or 1
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    futures = {pool.submit(dask.compute, delayed[u], scheduler="sync"): u
                               for u in todo}
                    for i, fut in enumerate(done_first(futures), 1):
                        keep(futures[fut], fut.result()[0], final=i == len(todo))
        self.n_passes += 1
        parts = [done[u] for u in range(self.n_units)]
        stats = self._stats(reduce_parts(parts, self.problem.stats, self.split_every))
        return stats, self._points_of(todo)


def workers_have_gpus(client) -> bool:
    """Whether the Client's workers advertise the ``GPU`` resource (GPU-pinned workers)."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return any("GPU" in (w.get("resources") or {}) for w in workers.values())


def _persist(arrays, client):
    import dask

    if client is not None:
        return client.persist(arrays)
    return list(dask.persist(*arrays))


def make_runner(problem, inputs, selection, client=None) -> PassRunner:
    """Aligned (and, for CHUNKED, persisted) partitions and their pass runner."""
    c = selection.config
    arrays = as_dask_arrays(inputs, selection.partition_points, c.chunk_size)
    if selection.tier is WorkflowTier.CHUNKED:
        arrays = _persist(arrays, client)
    return PassRunner(problem, arrays, n_x=inputs.n_inputs, split_every=c.split_every,
                      client=client, source=describe_sources(arrays),
                      require_finite=inputs.require_finite)


def run_dask(problem, *, x0, inputs, selection, opts, lb=None, ub=None, client=None,
             progress=None, checkpoint_name=None, resume=True, checkpoint_fresh=False,
             runner=None, subsets: bool = True) -> EngineOutput:
    """Fit with CHUNKED or STREAMING passes; returns the final state and history.

    With checkpoints enabled in the configuration, the solver state is stored every
    ``checkpoint_frequency`` passes and finished partitions within a pass, and a
    stored fit of the same problem is resumed (``resume=True``). With ``subsets`` (and
    the configuration's ``subset_passes``) a fit that is not resumed first iterates on
    growing subsets of partitions (:func:`~nlsq_dask.engines.subsets.subset_start`).
    """
    from .subsets import subset_start

    c = selection.config
    ckpt = None
    if c.enable_checkpoints:
        from .fit_checkpoint import FitCheckpoint

        arrays = runner.arrays if runner is not None else as_dask_arrays(
            inputs, selection.partition_points, c.chunk_size)
        ckpt = FitCheckpoint.open(problem.spec, inputs, arrays, lb, ub, c, x0,
                                  name=checkpoint_name, resume=resume, fresh=checkpoint_fresh)
        ckpt.tolerances = [float(opts.ftol), float(opts.xtol), float(opts.gtol)]
    try:
        runner = runner if runner is not None else make_runner(problem, inputs, selection, client)
        if ckpt is not None:
            ckpt.seed_ledger(runner.ledger)
        start, report = x0, None
        if subsets and c.subset_passes and (ckpt is None or not ckpt.has_state()):
            start, report = subset_start(runner, x0, opts, progress)
        prior = report.equivalent_passes if report is not None else 0.0
        out = fit_start(runner, start, opts, inputs.n_points, progress, ckpt, prior=prior)
        if report is not None:
            out.extras["subsets"] = report.to_dict()
        return out
    finally:
        if ckpt is not None:
            ckpt.close()
