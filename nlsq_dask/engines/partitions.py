"""Blocks of points and their statistics kernel: aligned chunks, padded lengths, the kernel.

The kernel (:func:`stats_kernel`) runs inside dask tasks (threads or worker processes)
and, on in-memory data, in the STANDARD tier's passes. A dask block is padded to one of
a few bucket lengths (points past the block's length are masked out), so a fit compiles
one kernel per bucket rather than one per block length; in-memory data to a
power-of-two length (:func:`padded_length`). Kernels are cached per process under what
the model computes (a model function unpickled on a worker is a new object every task,
which would otherwise defeat JAX's cache).
"""
from __future__ import annotations

import threading
from functools import partial

import numpy as np

MAX_TILE = 4096
_KERNELS: dict = {}
_LOCK = threading.Lock()


def tile_for(max_block: int) -> int:
    """Tile length for blocks of at most ``max_block`` points: 4096 (cache-sized, measured
    fastest on CPU) for large blocks, else the block rounded up to a multiple of 8."""
    return int(min(MAX_TILE, max(8, -(-max_block // 8) * 8)))


def bucket_length(length: int, tile: int, max_block: int) -> int:
    """Padded length of a block: ``tile·2^k`` capped at the largest block (rounded to a tile)."""
    full = -(-max_block // tile) * tile
    tiles = -(-length // tile)
    return int(min(full, tile * (1 << max(0, (tiles - 1).bit_length()))))


# Beyond this many points in-memory data are not padded: the copy would cost every fit
# a millisecond or more (3 ms at 10^6 points), a new length's kernel compiles once.
POW2_BUCKETS_UP_TO = 1 << 18


def padded_length(n: int, compiled=()) -> tuple[int, int]:
    """``(tile, padded length)`` of ``n`` in-memory points: the compiled shape.

    The length is the next power of two (at least 16 points), or a length in
    ``compiled`` (those already compiled) up to twice that, so one compiled kernel
    serves every ``n`` from a quarter of its length up. The tile is 1/32 of the length
    (8 to :data:`MAX_TILE` points) and the kernel visits only the tiles that hold data,
    so padding costs at most one tile: under 1/8 of a pass from 128 points up. Above
    :data:`POW2_BUCKETS_UP_TO` points nothing is padded (the length is ``n``): a copy
    of the data would cost more than compiling for a new length.
    """
    n = max(int(n), 1)
    own = max(16, 1 << (n - 1).bit_length())
    if own > POW2_BUCKETS_UP_TO:
        return MAX_TILE, n
    length = min([c for c in compiled if n <= c <= 2 * own], default=own)
    return _tile_of(length), length


def _tile_of(length: int) -> int:
    return int(min(MAX_TILE, max(8, length // 32)))


def align_chunks(arrays: list, names: list[str], target: tuple[int, ...] | None = None):
    """Rechunk 1-D dask arrays to common chunks along the point axis.

    With ``target`` all arrays get those chunks. Otherwise they get the common
    refinement of their chunk boundaries, which never reads a source chunk twice;
    if that refinement has more than 1.5 times the partitions of the most finely
    chunked input (badly offset boundaries that cut slivers), a ``ValueError`` says
    which arrays to rechunk.
    """
    if target is not None:
        return [a.rechunk((target,)) for a in arrays]
    chunk_sets = [a.chunks[0] for a in arrays]
    if all(c == chunk_sets[0] for c in chunk_sets):
        return arrays
    bounds = sorted(set().union(*[set(np.cumsum((0,) + c).tolist()) for c in chunk_sets]))
    refined = tuple(int(b - a) for a, b in zip(bounds[:-1], bounds[1:]))
    most = max(len(c) for c in chunk_sets)
    if 2 * len(refined) > 3 * most:
        desc = ", ".join(f"{n}: {len(c)} chunks of ~{int(np.mean(c)):,}" for n, c in zip(names, chunk_sets))
        raise ValueError(
            f"the chunks of {', '.join(names)} are misaligned ({desc}); aligning them would "
            f"create {len(refined)} partitions. Rechunk them to the same chunks along the "
            "point axis, e.g. y = y.rechunk(x.chunks[-1]), or pass chunk_size=")
    return [a.rechunk((refined,)) for a in arrays]


def stats_kernel(key, problem, tile: int, batched: bool = False, summary: bool = True,
                 blocks: bool = False):
    """The jitted statistics kernel of ``problem`` on blocks of at least ``tile`` points,
    one per process, model ``key`` (what the model computes: a token of its identity, or
    the :class:`~nlsq_dask.solver.ModelSpec` itself), loss and statistics type.

    ``batched`` maps it over a leading axis of starts (one read of the block serves every
    start); ``summary`` adds the block's data summary
    (:func:`~nlsq_dask.solver.block_summary`) to the statistics; ``blocks`` runs it on
    each of a stack of blocks in turn (``lax.map``: the same per-block computation,
    bit for bit, as one call per block), giving their statistics stacked.
    """
    key = (key, problem.loss, problem.stats, tile, batched, summary, blocks)
    fn = _KERNELS.get(key)
    if fn is None:
        import jax

        from ..solver import block_stats, block_summary
        from ..solver.compile_cache import enable_from_environment
        from ..solver.compile_options import jit_kernel

        enable_from_environment()      # a worker process: before its first compile

        with _LOCK:
            fn = _KERNELS.get(key)
            if fn is None:
                stats = partial(block_stats, problem.spec, problem.loss, problem.stats, tile)
                if batched:
                    stats = jax.vmap(stats, in_axes=(0, None, None, None, None, None))

                def fn(params, xs, y, w, n_valid, f_scale, stats=stats):
                    out = stats(params, xs, y, w, n_valid, f_scale)
                    return (out, block_summary(xs, y, w, n_valid)) if summary else out

                if blocks:
                    one = fn

                    def fn(params, xs, y, w, n_valid, f_scale, one=one):
                        return jax.lax.map(lambda b: one(params, *b, f_scale), (xs, y, w, n_valid))

                fn = jit_kernel(fn)
                _KERNELS[key] = fn
    return fn


def block_task(token, problem, tile, max_block, params, n_x, blocks):
    """Statistics of one partition and its data summary, as a tuple of numpy arrays
    (a dask task): the statistics' leaves, then the ``(1, k)`` summary of
    :func:`~nlsq_dask.solver.block_summary` (which :func:`combine_task` stacks).

    ``params`` of shape ``(S, p)`` evaluates ``S`` starts in one read of the block;
    every statistic then has a leading axis of length ``S``.
    """
    import jax.numpy as jnp

    xs, y = blocks[:n_x], blocks[n_x]
    sigma = blocks[n_x + 1] if len(blocks) > n_x + 1 else None
    n = int(np.shape(y)[0])
    length = bucket_length(n, tile, max_block)

    def padded(a, fill=0.0):
        a = np.asarray(a, dtype=np.float64)
        return a if a.shape[0] == length else np.concatenate([a, np.full(length - n, fill)])

    with np.errstate(divide="ignore"):  # sigma = 0 gives w = inf, counted by the summary
        w = None if sigma is None else 1.0 / padded(sigma, 1.0)
    stats, summary = stats_kernel(token, problem, tile, np.ndim(params) == 2)(
        jnp.asarray(params), tuple(padded(x) for x in xs), padded(y), w, np.int64(n),
        np.float64(problem.f_scale))
    return tuple(np.asarray(s) for s in stats) + (np.asarray(summary),)


def unit_task(token, problem, tile, max_block, split_every, levels, params, n_arrays, n_x,
              blocks):
    """Statistics of a unit of several consecutive partitions (a dask task): their
    per-partition statistics combined along the first ``levels`` levels of the fixed
    reduction tree (:func:`~nlsq_dask.engines.reduce.reduce_levels`), so a pass gives
    the same numbers, bit for bit, as one task per partition.

    ``blocks`` are the partitions' input blocks, ``n_arrays`` per partition (x..., y[, σ]).
    They are stacked, padded to ``split_every**levels`` blocks of the longest padded
    length (one compiled kernel for every unit) and run through the kernel in one call.
    """
    import jax.numpy as jnp

    from .reduce import reduce_levels

    groups = [blocks[i:i + n_arrays] for i in range(0, len(blocks), n_arrays)]
    lengths = np.array([np.shape(g[n_x])[0] for g in groups], dtype=np.int64)
    size, length = split_every ** levels, bucket_length(max_block, tile, max_block)

    def stacked(j, fill):
        out = np.full((size, length), fill, dtype=np.float64)
        for i, g in enumerate(groups):
            out[i, :lengths[i]] = g[j]
        return out

    sigma = n_arrays > n_x + 1
    with np.errstate(divide="ignore"):  # sigma = 0 gives w = inf, counted by the summary
        w = 1.0 / stacked(n_x + 1, 1.0) if sigma else None
    n_valid = np.zeros(size, dtype=np.int64)
    n_valid[:len(groups)] = lengths
    stats, summary = stats_kernel(token, problem, tile, np.ndim(params) == 2, blocks=True)(
        jnp.asarray(params), tuple(stacked(j, 0.0) for j in range(n_x)), stacked(n_x, 0.0), w,
        n_valid, np.float64(problem.f_scale))
    stats = [np.asarray(s) for s in stats]
    summary = np.asarray(summary)
    parts = [tuple(s[i] for s in stats) + (summary[i],) for i in range(len(groups))]
    return reduce_levels(parts, problem.stats, split_every, levels)
