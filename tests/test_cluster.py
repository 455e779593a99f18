"""``nlsq_dask.cluster``: detected PBS/SLURM allocations feed the job scripts and defaults,
GPU-pinned worker specs, clear errors, and a real LocalCluster (and GPU cluster) fit."""

import os
import sys

import numpy as np
import pytest

from nlsq_dask import cluster
from nlsq_dask.workflow import ClusterDetector, ClusterInfo


@pytest.fixture
def pbs(tmp_path):
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("gpu01\ngpu01\ngpu02\ngpu02\ngpu03\n")
    env = {"PBS_JOBID": "4242.pbs", "PBS_NODEFILE": str(nodefile), "PBS_NGPUS": "2"}
    return ClusterDetector(env, use_nvidia_smi=False).detect()


@pytest.fixture
def slurm():
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "node[08-09]",
           "SLURM_GPUS_ON_NODE": "4"}
    return ClusterDetector(env, use_nvidia_smi=False).detect()


def test_detected_allocations(pbs, slurm):
    assert (pbs.scheduler, pbs.node_count, pbs.gpus_per_node, pbs.total_gpus) == ("pbs", 3, 2, 6)
    assert pbs.node_list == ["gpu01", "gpu02", "gpu03"] and pbs.job_id == "4242.pbs"
    assert (slurm.scheduler, slurm.node_list, slurm.gpus_per_node) == \
        ("slurm", ["node08", "node09"], 4)


def job_script(kind, cfg, detected):
    pytest.importorskip("dask_jobqueue")
    c = cluster.jobqueue_cluster(kind, cfg, detected)
    try:
        return c.job_script()
    finally:
        c.close()


def test_pbs_job_script_from_detected_gpus(pbs):
    script = job_script("pbs", {"queue": "gpuq", "account": "proj7", "walltime": "02:00:00",
                                "cores_per_node": 8, "memory_per_node": "64GiB"}, pbs)
    assert "#PBS -l select=1:ncpus=8:ngpus=2:mem=64gb" in script
    assert "#PBS -q gpuq" in script and "#PBS -A proj7" in script
    assert "walltime=02:00:00" in script
    assert "--nworkers 2" in script and "--resources GPU=1" in script


def test_slurm_job_script_from_detected_gpus(slurm):
    script = job_script("slurm", {"queue": "gpu", "account": "acc1", "walltime": "00:30:00",
                                  "cores_per_node": 16, "memory_per_node": "128GiB",
                                  "job_extra": ["--exclusive"]}, slurm)
    assert "#SBATCH --gres=gpu:4" in script and "#SBATCH --exclusive" in script
    assert "#SBATCH -p gpu" in script and "#SBATCH -A acc1" in script
    assert "#SBATCH -t 00:30:00" in script
    assert "--nworkers 4" in script and "--resources GPU=1" in script


def test_cpu_job_script_has_no_gpu_resource():
    script = job_script("slurm", {"cores_per_node": 4, "memory_per_node": "8GiB"}, None)
    assert "--gres" not in script and "GPU=" not in script


def test_from_config_scales_to_the_detected_nodes(pbs, monkeypatch):
    made = {}

    class FakeJobCluster:
        def scale(self, jobs):
            made["jobs"] = jobs

        def close(self):
            made["closed"] = True

    class FakeClient:
        def __init__(self, c):
            made["client_of"] = c

        def close(self):
            pass

    def fake_jobqueue(kind, cfg, detected):
        made.update(kind=kind, cfg=cfg, detected=detected)
        return FakeJobCluster()

    monkeypatch.setattr(cluster, "jobqueue_cluster", fake_jobqueue)
    monkeypatch.setattr("distributed.Client", FakeClient)
    with cluster.from_config({"type": "pbs", "queue": "q"}, detected=pbs) as handle:
        assert isinstance(handle.cluster, FakeJobCluster)
    assert made["kind"] == "pbs" and made["detected"] is pbs and made["jobs"] == 3
    assert made["closed"] is True
    cluster.from_config({"type": "slurm", "nodes": 5}, detected=pbs).close()
    assert made["jobs"] == 5


def test_jobqueue_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ImportError, match=r"needs dask-jobqueue: pip install 'nlsq-dask\[hpc\]'"):
        cluster.jobqueue_cluster("slurm", {}, None)


def test_gpu_worker_specs_pin_one_gpu_each():
    specs = cluster.gpu_worker_specs(["0", "1"], memory_limit="4GiB")
    assert sorted(specs) == ["gpu-0", "gpu-1"]
    for dev in ("0", "1"):
        opts = specs[f"gpu-{dev}"]["options"]
        assert opts["env"]["CUDA_VISIBLE_DEVICES"] == dev
        assert opts["env"]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert opts["resources"] == {"GPU": 1} and opts["nthreads"] == 1
        assert opts["memory_limit"] == "4GiB"


def test_visible_gpus_reads_cuda_visible_devices():
    assert cluster.visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert cluster.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_gpu_cluster_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ValueError, match="no GPU is visible"):
        cluster.gpu_cluster()


def test_bad_addresses_and_types():
    with pytest.raises(ValueError, match="tcp://host:8786"):
        cluster.connect("bad")
    with pytest.raises(ValueError, match="needs an 'address'"):
        cluster.from_config({"type": "dask"}, detected=ClusterInfo())
    with pytest.raises(ValueError, match="got 'cloud'"):
        cluster.from_config({"type": "cloud"}, detected=ClusterInfo())


def _decay_data(n=20_000, chunks=5_000):
    import dask.array as da

    x = np.linspace(0.0, 10.0, n)
    y = 2.0 * np.exp(-0.5 * x) + 0.3 + np.random.default_rng(1).normal(0, 0.05, n)
    return x, y, da.from_array(x, chunks=chunks), da.from_array(y, chunks=chunks)


def test_local_cluster_from_config_runs_a_fit(monkeypatch):
    import nlsq_dask
    from nlsq_dask.models import exponential

    # as an earlier distributed cluster of this process leaves it (a nanny sets its
    # variables in the parent before spawning)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    x, y, xd, yd = _decay_data()
    with cluster.from_config({"type": "local", "n_workers": 2}, detected=ClusterInfo()) as h:
        info = h.client.scheduler_info(n_workers=-1)["workers"]
        assert len(info) == 2 and all(w["nthreads"] == 1 for w in info.values())
        # glibc's adaptive mmap threshold stays on in our workers; the rest of
        # distributed's worker environment is kept
        environ = h.client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                        os.environ.get("OMP_NUM_THREADS")))
        assert set(environ.values()) == {(None, "1")}
        assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"     # put back
        result = nlsq_dask.fit(exponential, xd, yd, p0=[2.5, 0.6, 0.2], tier="chunked",
                               client=h.client)
        local = h.cluster
    assert local.status.name == "closed"
    ref = nlsq_dask.fit(exponential, x, y, p0=[2.5, 0.6, 0.2])
    assert result.success and result.tier.value == "chunked"
    np.testing.assert_allclose(result.popt, ref.popt, rtol=1e-8)


def _gpus():
    try:
        import jax

        return jax.devices("gpu")
    except RuntimeError:
        return []


@pytest.mark.skipif(not _gpus(), reason="needs a GPU visible to JAX")
def test_gpu_cluster_fit():
    import nlsq_dask
    from nlsq_dask.models import exponential

    x, y, xd, yd = _decay_data()
    devices = [str(d.id) for d in _gpus()]
    c = cluster.gpu_cluster(devices=devices)
    with cluster.ClusterHandle(__import__("distributed").Client(c), c) as h:
        workers = h.client.scheduler_info(n_workers=-1)["workers"].values()
        assert len(workers) == len(devices)
        assert all(w["resources"].get("GPU") == 1 for w in workers)
        result = nlsq_dask.fit(exponential, xd, yd, p0=[2.5, 0.6, 0.2], tier="chunked",
                               client=h.client)
    ref = nlsq_dask.fit(exponential, x, y, p0=[2.5, 0.6, 0.2])
    assert result.success
    np.testing.assert_allclose(result.popt, ref.popt, rtol=1e-8)
