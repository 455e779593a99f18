import gc
import pathlib
import sys
import warnings

import pytest

TIMEOUT = 60

sys.path.insert(0, str(pathlib.Path(__file__).parent))


MAX_MAPPINGS = 30_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to watch
        return 0


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after a test module once there are many.

    Each compiled XLA CPU program holds ~500 memory mappings that live as long as the
    program is cached; a process that compiles ~120 different models reaches Linux's
    default ``vm.max_map_count`` (65,530) and aborts. The suite compiles more than that
    in one process, so past :data:`MAX_MAPPINGS` it frees them between modules (not
    always: recompiling what later modules share costs minutes).
    """
    yield
    if "jax" in sys.modules and _mappings() > MAX_MAPPINGS:
        sys.modules["jax"].clear_caches()
        gc.collect()


@pytest.fixture(scope="module")
def cluster():
    """A ``distributed.LocalCluster`` of two single-thread worker processes."""
    distributed = pytest.importorskip("distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", memory_limit="2GiB")
    try:
        yield cl
    finally:
        cl.close(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def client(cluster):
    """A Client of :func:`cluster` that is *not* the default: tests opt in with
    ``client.as_current()`` or ``client=``."""
    import distributed

    c = distributed.Client(cluster, set_as_default=False, timeout=TIMEOUT)
    c.wait_for_workers(2, timeout=TIMEOUT)
    try:
        yield c
    finally:
        c.close(timeout=TIMEOUT)
