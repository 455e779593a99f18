"""Reads fused into the pass tasks that use them: one task per unit of work, not three.

A pass over ``from_zarr`` (or ``from_array``) inputs would otherwise be, per partition,
a read task for x, one for y and the statistics task. Fused, the statistics task reads
its own blocks, so

* the scheduler handles a third of the tasks (it costs ~0.3 ms a task in dask's threaded
  scheduler and more on a cluster, which dominates passes over many small chunks);
* on a cluster no block travels between workers: the x and y of a partition were
  otherwise read by whichever workers were free and one of them sent to the other;
* the statistics task is a *root* task, which the distributed scheduler queues
  (``distributed.scheduler.worker-saturation``), so a worker holds at most about one
  partition per thread however far the tasks queue up — memory O(partition) under load.

Only what a unit alone uses is fused (the chain from its blocks back to what other
tasks share, such as the zarr array object); persisted partitions stay where they are.
"""

from __future__ import annotations

from collections import Counter


def _inlinable(node) -> bool:
    """Whether ``node`` computes (or holds) a block here, rather than naming data held
    elsewhere (a persisted partition on a worker)."""
    from dask._task_spec import DataNode, GraphNode

    if isinstance(node, DataNode):
        return not type(node.value).__module__.startswith("distributed")
    return isinstance(node, GraphNode)


class FusedReads:
    """For each unit of a pass, its input blocks as tasks nested in the unit's task.

    Parameters
    ----------
    arrays : list of dask arrays
        The pass's inputs.
    unit_keys : list of list of keys
        The input block keys each unit's task reads.

    Each block key becomes its chain of tasks back to what other tasks share, nested
    (``GraphNode.substitute``) rather than fused into a subgraph: a fused subgraph is
    ordered again each time it runs, which cost more than the statistics of a unit of
    small partitions.
    """

    def __init__(self, arrays, unit_keys):
        from dask._task_spec import convert_legacy_graph
        from dask.highlevelgraph import HighLevelGraph

        graph = HighLevelGraph.merge(*[a.__dask_graph__() for a in arrays])
        dsk = convert_legacy_graph(dict(graph))
        dependents = Counter(d for node in dsk.values() for d in node.dependencies)

        def nested(k):
            node = dsk[k]
            own = {d: nested(d) for d in node.dependencies
                   if dependents[d] == 1 and d in dsk and _inlinable(dsk[d])}
            return node.substitute(own) if own else node

        self.unit_keys = unit_keys
        self._blocks = [None] * len(unit_keys)
        #: per unit, ``{block key: the block's task, its private inputs nested}``
        self.subs = [{k: nested(k) for k in dict.fromkeys(keys) if k in dsk and _inlinable(dsk[k])}
                     for keys in unit_keys]
        #: what the units' tasks still depend on (sources, persisted partitions, a block
        #: nested in one unit but also read by others' tasks) and its inputs, as they are
        needed = [d for subs in self.subs for node in subs.values() for d in node.dependencies]
        self.shared = {}
        while needed:
            k = needed.pop()
            if k in dsk and k not in self.shared:
                self.shared[k] = dsk[k]
                needed.extend(dsk[k].dependencies)

    def blocks(self, unit: int):
        """The input blocks of ``unit``'s task, in order, as one nested list node: the
        reads only it uses nested in, references to the rest. Built once and reused by
        every pass, so a pass over 10^5 partitions does not rebuild 10^5 read tasks."""
        node = self._blocks[unit]
        if node is None:
            from dask._task_spec import List, TaskRef

            subs = self.subs[unit]
            node = List(*[subs.get(k, TaskRef(k)) for k in self.unit_keys[unit]])
            self._blocks[unit] = node
        return node


#: blocks a load task concatenates (a 10^5-chunk array loads in ~100 tasks)
LOAD_GROUP = 1024


def load(arrays) -> list:
    """1-D ``arrays`` as numpy arrays: each dask array read by tasks of up to
    :data:`LOAD_GROUP` consecutive blocks (their reads nested in, as in a pass), any
    other array as it is.

    ``dask.compute`` would schedule one task per block and per operation behind it: over
    10^5 small chunks that costs the scheduler far more than the reads. Runs on the
    active scheduler (threads, or the current distributed client).
    """
    import dask
    import numpy as np
    from dask._task_spec import List, Task, TaskRef
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    lazy = [i for i, a in enumerate(arrays) if hasattr(a, "__dask_keys__")]
    if not lazy:
        return [np.asarray(a) for a in arrays]
    name = f"nlsq-load-{dask.base.tokenize(*arrays)}"
    unit_keys, pieces = [], {}
    for i in lazy:
        keys = list(arrays[i].__dask_keys__())
        groups = [keys[s:s + LOAD_GROUP] for s in range(0, len(keys), LOAD_GROUP)]
        pieces[i] = [(name, i, j) for j in range(len(groups))]
        unit_keys += groups
    reads = FusedReads([arrays[i] for i in lazy], unit_keys)
    flat = [k for i in lazy for k in pieces[i]]
    layer = {k: Task(k, np.concatenate, reads.blocks(u)) for u, k in enumerate(flat)}
    for i in lazy:
        layer[(name, i)] = Task((name, i), np.concatenate, List(*[TaskRef(k) for k in pieces[i]]))
    shared = f"{name}-inputs"
    hlg = HighLevelGraph({shared: MaterializedLayer(reads.shared),
                          name: MaterializedLayer(layer)}, {shared: set(), name: {shared}})
    loaded = dict(zip(lazy, dask.compute(*[Delayed((name, i), hlg, layer=name) for i in lazy])))
    return [loaded[i] if i in loaded else np.asarray(a) for i, a in enumerate(arrays)]
