"""Memory and resource detection (psutil, nvidia-smi, duck-typed dask client)."""

import sys

import psutil
import pytest

from nlsq_dask.workflow import (
    MemoryTier,
    ResourceSnapshot,
    get_memory_tier,
    get_total_available_memory_gb,
)
from nlsq_dask.workflow import host_memory
from nlsq_dask.workflow import resources as res

GiB = 2**30


class FakeClient:
    def __init__(self, workers):
        self._workers = workers

    def scheduler_info(self, n_workers=-1):
        assert n_workers == -1
        return {"workers": self._workers}


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(res, "get_gpu_free_memory_gb", lambda: [])


def test_total_memory_is_host_without_gpu(no_gpu):
    total = get_total_available_memory_gb()
    assert 0 < total <= psutil.virtual_memory().total / GiB
    assert isinstance(get_memory_tier(), MemoryTier)
    assert get_memory_tier(100.0) is MemoryTier.HIGH


def test_total_memory_adds_gpu(monkeypatch):
    monkeypatch.setattr(res, "get_host_available_memory_gb", lambda: 10.0)
    monkeypatch.setattr(res, "get_gpu_free_memory_gb", lambda: [40.0, 39.0])
    assert get_total_available_memory_gb() == 89.0


def test_nvidia_smi_parsing(monkeypatch, tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\nprintf '81000\\n40960\\n'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert res.get_gpu_free_memory_gb() == pytest.approx([81000 / 1024, 40.0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert res.get_gpu_free_memory_gb() == pytest.approx([40.0])


def test_no_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    assert res.get_gpu_free_memory_gb() == []


def test_jax_memory_stats_used_when_imported(monkeypatch):
    class Dev:
        platform = "gpu"

        def memory_stats(self):
            return {"bytes_limit": 80 * GiB, "bytes_in_use": 16 * GiB}

    class FakeJax:
        @staticmethod
        def devices():
            return [Dev(), Dev()]

    monkeypatch.setitem(sys.modules, "jax", FakeJax)
    assert res.get_gpu_free_memory_gb() == [64.0, 64.0]


def test_detect_local(no_gpu):
    snap = ResourceSnapshot.detect(memory_limit_gb=0.5)
    assert snap.host_memory_gb <= 0.5 and snap.n_gpus == 0 and snap.n_workers == 0
    assert snap.n_threads >= 1


def test_detect_with_client(no_gpu):
    client = FakeClient({
        "tcp://a:1": {"memory_limit": 256 * GiB, "nthreads": 32, "resources": {"GPU": 2}},
        "tcp://b:1": {"memory_limit": 128 * GiB, "nthreads": 16, "resources": {}},
        "tcp://c:1": {"memory_limit": 0, "nthreads": 8},
    })
    snap = ResourceSnapshot.detect(client=client)
    assert snap.worker_memory_gb[:2] == (256.0, 128.0)
    assert snap.worker_memory_gb[2] == pytest.approx(psutil.virtual_memory().total / GiB)
    assert snap.n_threads == 56 and snap.worker_gpus == 2 and snap.n_workers == 3
    assert snap.to_dict()["worker_memory_gb"][0] == 256.0


@pytest.mark.parametrize("kw, match", [
    ({"host_memory_gb": -1}, "host_memory_gb must be a non-negative"),
    ({"host_memory_gb": 8, "n_threads": 0}, "n_threads must be an integer >= 1"),
    ({"host_memory_gb": 8, "worker_memory_gb": (1, -2)}, "worker_memory_gb must hold"),
])
def test_snapshot_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        ResourceSnapshot(**kw)


def test_detect_bad_limit(no_gpu):
    with pytest.raises(ValueError, match="memory_limit_gb must be a positive number; got -3"):
        ResourceSnapshot.detect(memory_limit_gb=-3)


# ----------------------------------------------------------------------------- cgroups
MACHINE = (256 * GiB, 200 * GiB)  # total, available of the faked machine


def write_files(base, files):
    """Write ``{relative path: text}`` below ``base``."""
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def cgroup_tree(tmp_path, proc, files):
    """A fake ``/sys/fs/cgroup`` (``tmp_path/cg``) and ``/proc/self/cgroup``."""
    write_files(tmp_path / "cg", files)
    (tmp_path / "proc-cgroup").write_text(proc)
    return tmp_path / "cg", tmp_path / "proc-cgroup"


V2_CONTAINER = {"memory.max": f"{4 * GiB}\n", "memory.high": "max\n",
                "memory.current": f"{GiB}\n",
                "memory.stat": f"anon {GiB // 2}\nfile {GiB // 2}\ninactive_file {GiB // 4}\n"}


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A 256 GiB machine (200 GiB available) without cgroup limits; returns a function
    that gives it the cgroup files ``(proc, files)`` and distributed's MEMORY_LIMIT."""
    from collections import namedtuple

    import distributed.system

    vm = namedtuple("svmem", "total available")(*MACHINE)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: vm)
    monkeypatch.setattr(host_memory, "_process_tree_rss", lambda: GiB)

    def configure(proc="0::/\n", files=None, dask_limit=MACHINE[0]):
        root, proc_file = cgroup_tree(tmp_path, proc, files or {})
        monkeypatch.setattr(host_memory, "CGROUP_ROOT", root)
        monkeypatch.setattr(host_memory, "PROC_SELF_CGROUP", proc_file)
        monkeypatch.setattr(distributed.system, "MEMORY_LIMIT", dask_limit)
        return root

    configure()
    return configure


def test_cgroup_v2_container(tmp_path):
    root, proc = cgroup_tree(tmp_path, "0::/\n", V2_CONTAINER)
    cg = res.cgroup_memory(root, proc)
    # working set = usage 1 GiB - inactive file 0.25 GiB; 4 - 0.75 GiB left
    assert cg == res.CgroupMemory(limit=4 * GiB, available=int(3.25 * GiB),
                                  path=str(root / "memory.max"))


def test_cgroup_v2_slurm_job_below_the_root(tmp_path):
    job = "system.slice/slurmstepd.scope/job_7"
    root, proc = cgroup_tree(tmp_path, f"0::/{job}/step_0/user/task_0\n", {
        "cgroup.controllers": "cpu memory\n",           # the root: no memory.max
        f"{job}/memory.max": f"{8 * GiB}\n", f"{job}/memory.high": f"{6 * GiB}\n",
        f"{job}/memory.current": f"{5 * GiB}\n",
        f"{job}/step_0/memory.max": "max\n", f"{job}/step_0/memory.current": f"{5 * GiB}\n",
        f"{job}/step_0/user/task_0/memory.max": f"{7 * GiB}\n",
        f"{job}/step_0/user/task_0/memory.current": f"{2 * GiB}\n",
    })
    cg = res.cgroup_memory(root, proc)
    # the job's memory.high (6 GiB) binds; the job has 1 GiB left, the task 5 GiB of its 7
    assert cg.limit == 6 * GiB and cg.available == GiB
    assert cg.path == str(root / job / "memory.high")


def test_cgroup_v1_nested_and_unlimited_root(tmp_path):
    root, proc = cgroup_tree(tmp_path, "5:devices:/\n4:memory:/slurm/uid_1/job_3\n0::/\n", {
        "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
        "memory/memory.usage_in_bytes": f"{100 * GiB}\n",
        "memory/slurm/uid_1/job_3/memory.limit_in_bytes": f"{2 * GiB}\n",
        "memory/slurm/uid_1/job_3/memory.usage_in_bytes": f"{GiB}\n",
        "memory/slurm/uid_1/job_3/memory.stat": f"inactive_file 1\ntotal_inactive_file {GiB // 2}\n",
    })
    cg = res.cgroup_memory(root, proc)
    assert cg.limit == 2 * GiB and cg.available == int(1.5 * GiB)
    assert cg.path.endswith("memory/slurm/uid_1/job_3/memory.limit_in_bytes")


def test_cgroup_v1_container_sees_its_cgroup_as_the_root(tmp_path):
    # no cgroup namespace: /proc/self/cgroup names the host's path, which is not mounted
    root, proc = cgroup_tree(tmp_path, "4:memory:/docker/abc123\n", {
        "memory/memory.limit_in_bytes": f"{3 * GiB}\n"})
    cg = res.cgroup_memory(root, proc)
    assert cg.limit == 3 * GiB and cg.available is None  # no usage file to read
    assert cg.path == str(root / "memory" / "memory.limit_in_bytes")


@pytest.mark.parametrize("proc, files", [
    ("0::/\n", {}),                                                # no memory controller
    ("0::/\n", {"memory.max": "max\n", "memory.current": "5\n"}),  # v2, no limit
    ("4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"}),
    ("", {"memory.max": "garbage\n"}),
])
def test_no_cgroup_limit(tmp_path, proc, files):
    assert res.cgroup_memory(*cgroup_tree(tmp_path, proc, files)) is None


def test_cgroup_missing_proc_file(tmp_path):
    write_files(tmp_path, V2_CONTAINER)  # a container's root is enough
    assert res.cgroup_memory(tmp_path, tmp_path / "nope").limit == 4 * GiB


def test_detected_memory_is_the_cgroup_limit(machine):
    root = machine(files=V2_CONTAINER)
    host = res.detect_host_memory()
    assert host.total_gb == 4.0 and host.available_gb == 3.25
    assert host.source == "cgroup" and host.limit == str(root / "memory.max")
    assert (host.machine_total_gb, host.machine_available_gb) == (256.0, 200.0)
    assert res.get_host_total_memory_gb() == 4.0
    assert res.get_host_available_memory_gb() == 3.25
    assert "3.2 GiB available of 4.0 GiB (cgroup; limit " in host.describe()
    assert "the machine: 200.0 of 256.0 GiB" in host.describe()


def test_detected_memory_is_psutils_without_cgroups(machine):
    host = res.detect_host_memory()
    assert (host.total_gb, host.available_gb, host.source, host.limit) == \
        (256.0, 200.0, "psutil", None)
    assert host.describe() == "200.0 GiB available of 256.0 GiB (psutil)"


def test_machine_short_of_memory_bounds_a_generous_cgroup(machine, monkeypatch):
    from collections import namedtuple

    machine(files={**V2_CONTAINER, "memory.max": f"{300 * GiB}\n"})  # above the machine
    assert res.detect_host_memory().source == "psutil"
    vm = namedtuple("svmem", "total available")(256 * GiB, 2 * GiB)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: vm)
    machine(files={**V2_CONTAINER, "memory.max": f"{16 * GiB}\n"})
    host = res.detect_host_memory()
    assert (host.total_gb, host.available_gb, host.source) == (16.0, 2.0, "psutil")
    assert host.limit.endswith("memory.max")


def test_limit_only_distributed_finds(machine):
    machine(dask_limit=8 * GiB)  # e.g. RLIMIT_RSS or a soft limit
    host = res.detect_host_memory()
    assert (host.total_gb, host.available_gb, host.source) == (8.0, 7.0, "distributed")
    assert host.limit == "distributed.system.MEMORY_LIMIT"


def test_cgroup_without_usage_counts_this_process_tree(machine):
    machine(files={"memory.max": f"{4 * GiB}\n"})
    host = res.detect_host_memory()
    assert (host.total_gb, host.available_gb, host.source) == (4.0, 3.0, "cgroup")


def test_real_machine_within_psutil():
    host = res.detect_host_memory()
    vm = psutil.virtual_memory()
    assert 0 < host.total_gb <= vm.total / GiB and 0 <= host.available_gb <= host.total_gb
    assert host.source in ("psutil", "cgroup", "distributed")


def test_snapshot_takes_the_cgroup_and_caps_with_the_limit(machine, no_gpu, monkeypatch):
    from nlsq_dask.workflow import auto_select_workflow, resolve_config

    machine(files=V2_CONTAINER)
    snap = ResourceSnapshot.detect()
    assert (snap.host_memory_gb, snap.host_memory_source) == (3.25, "cgroup")
    assert snap.to_dict()["host_memory_source"] == "cgroup"
    # NLSQ_MEMORY_LIMIT_GB (through the configuration) caps the detected figure ...
    monkeypatch.setenv("NLSQ_MEMORY_LIMIT_GB", "1.5")
    cfg = resolve_config()
    assert cfg.memory_limit_gb == 1.5
    snap = ResourceSnapshot.detect(memory_limit_gb=cfg.memory_limit_gb)
    assert (snap.host_memory_gb, snap.host_memory_source) == (1.5, "memory_limit_gb")
    assert auto_select_workflow(10**6, 3, config=cfg).resources.host_memory_gb == 1.5
    # ... an explicit memory_limit_gb wins over the variable ...
    assert resolve_config(overrides={"memory_limit_gb": 2.0}).memory_limit_gb == 2.0
    assert auto_select_workflow(10**6, 3, memory_limit_gb=2.0).resources.host_memory_gb == 2.0
    # ... and a cap above what the cgroup has left changes nothing
    snap = ResourceSnapshot.detect(memory_limit_gb=100.0)
    assert (snap.host_memory_gb, snap.host_memory_source) == (3.25, "cgroup")


def test_worker_without_limit_counts_the_limited_host(machine, no_gpu):
    machine(files=V2_CONTAINER)
    snap = ResourceSnapshot.detect(client=FakeClient({"tcp://c:1": {"memory_limit": 0}}))
    assert snap.worker_memory_gb == (4.0,)


def test_total_memory_when_psutil_fails_is_nlsq_fallback(monkeypatch):
    # NLSQ's MemoryEstimator counts 16 GB of host memory when psutil raises
    from nlsq_dask.workflow import resources

    def broken():
        raise RuntimeError("no /proc/meminfo")
    monkeypatch.setattr(psutil, "virtual_memory", broken)
    monkeypatch.setattr(resources, "get_gpu_free_memory_gb", lambda: [])
    assert resources.get_total_available_memory_gb() == 16.0
