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

    def fuse(self, unit: int, task):
        """``task`` of ``unit`` with the reads only it uses nested in (one task)."""
        subs = self.subs[unit]
        return task.substitute(subs) if subs else task
