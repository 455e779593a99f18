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
