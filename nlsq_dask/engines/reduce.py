"""The fixed reduction tree that adds partition statistics, on the workers or the client.

Both a pass's dask graph and the client-side reduction of a checkpointed pass follow
:func:`reduction_tree`, so a pass gives bit-identical statistics whichever way it ran.
"""

from __future__ import annotations

import numpy as np


def reduction_tree(n_parts: int, split_every: int) -> list[list[list[int]]]:
    """Groups of the fixed reduction tree: per level, the indices combined together.

    The graph and the client-side reduction of a checkpointed pass both follow it,
    so a pass gives bit-identical statistics whichever way it ran.
    """
    levels, width = [], n_parts
    while width > 1:
        groups = [list(range(j, min(j + split_every, width))) for j in range(0, width, split_every)]
        levels.append(groups)
        width = len(groups)
    return levels


def reduce_levels(parts: list, stats: type, split_every: int, levels: int):
    """The first ``levels`` levels of the fixed tree over ``parts``, consecutive partitions
    from a multiple of ``split_every**levels``: the node their subtree adds up to.

    Every level combines groups of ``split_every``, a lone last one included, as the
    full tree does below its top (see :func:`unit_depth`).
    """
    for _ in range(levels):
        parts = [combine_task(stats, *parts[j:j + split_every])
                 for j in range(0, len(parts), split_every)]
    return parts[0]


#: partitions of fewer points than this are coalesced into tasks of several
COALESCE_BELOW = 10_000
#: ... of at most this many points a task
UNIT_POINTS = 1 << 17
#: ... and at least this many tasks a pass (enough for evenly spread subsets of them)
MIN_UNITS = 64


def unit_depth(chunks, split_every: int) -> int:
    """How many levels of the reduction tree one task covers: 0 (a task a partition)
    unless partitions average under :data:`COALESCE_BELOW` points; then the most levels
    with at most :data:`UNIT_POINTS` points and at least :data:`MIN_UNITS` tasks.

    A task then computes ``split_every**depth`` consecutive partitions, a subtree of
    the fixed tree, so the numbers do not depend on the depth: the scheduler's per-task
    cost (~0.3 ms a task in dask's threaded scheduler, more on a cluster) is paid per
    unit, not per partition of a few points.
    """
    n = len(chunks)
    mean = sum(chunks) / max(n, 1)
    depth = 0
    if mean >= COALESCE_BELOW:
        return 0
    while (split_every ** (depth + 1) * mean <= UNIT_POINTS
           and -(-n // split_every ** (depth + 1)) >= MIN_UNITS):
        depth += 1
    return depth


def reduce_parts(parts: list, stats: type, split_every: int):
    """Combine partition statistics on the client along :func:`reduction_tree`."""
    for groups in reduction_tree(len(parts), split_every):
        parts = [combine_task(stats, *[parts[i] for i in g]) for g in groups]
    return parts[0]


def combine_task(stats: type, *parts):
    """Fixed-order combination of partition statistics of type ``stats`` (deterministic);
    the data summaries (each part's last leaf) are stacked in partition order."""
    summary = np.concatenate([p[-1] for p in parts], axis=0)
    return stats.combine([p[:-1] for p in parts]) + (summary,)
