"""How many statistics kernels this process has compiled (for tests of compile reuse)."""

from nlsq_dask.engines import partitions


def compile_count() -> int:
    """Compiled variants of every statistics kernel in this process."""
    return sum(fn._cache_size() for fn in partitions._KERNELS.values())
