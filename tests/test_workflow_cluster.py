"""Cluster detection from made-up environments, node files and clients."""

import pytest

from nlsq_dask.workflow import ClusterDetector, ClusterInfo
from nlsq_dask.workflow.cluster_detection import expand_nodelist


class FakeClient:
    """Duck-typed stand-in for distributed.Client."""

    def __init__(self, workers, address="tcp://10.0.0.1:8786"):
        self._info = {"address": address, "workers": workers}

    def scheduler_info(self, n_workers=-1):
        return self._info


def _detector(env):
    return ClusterDetector(environ=env, use_nvidia_smi=False)


@pytest.mark.parametrize(
    "text, hosts",
    [
        ("node1", ["node1"]),
        ("gpu[01-04,07]", ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]),
        ("a[1-2],b3", ["a1", "a2", "b3"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("r[1-2]c[1-2]", ["r1c1", "r1c2", "r2c1", "r2c2"]),
        ("x[9],y-ib[1-2].cluster", ["x9", "y-ib1.cluster", "y-ib2.cluster"]),
    ],
)
def test_expand_nodelist(text, hosts):
    assert expand_nodelist(text) == hosts


@pytest.mark.parametrize("text, match", [
    ("gpu[01-04", r"unmatched '\['"), ("gpu01]", r"unmatched '\]'"),
    ("gpu[4-1]", r"bad range '4-1'"), ("gpu[a]", r"bad range item 'a'"),
])
def test_expand_nodelist_errors(text, match):
    with pytest.raises(ValueError, match=match):
        expand_nodelist(text)


def test_pbs(tmp_path):
    nodefile = tmp_path / "nodes"
    nodefile.write_text("cn01\n" * 4 + "cn02\n" * 4 + "cn03\n" + "\n")
    env = {"PBS_NODEFILE": str(nodefile), "PBS_JOBID": "1234.pbs01", "PBS_NGPUS": "2"}
    info = _detector(env).detect()
    assert info.scheduler == "pbs" and info.job_id == "1234.pbs01"
    assert info.node_list == ["cn01", "cn02", "cn03"] and info.node_count == 3
    assert info.gpus_per_node == 2 and info.total_gpus == 6


def test_pbs_unreadable_nodefile(tmp_path):
    # as NLSQ's: no PBS job without a readable node file
    assert _detector({"PBS_JOBID": "7", "PBS_NODEFILE": str(tmp_path / "gone")}).detect_pbs() \
        is None
    assert _detector({"PBS_JOBID": "7"}).detect_pbs() is None


@pytest.mark.parametrize("gpu_env, gpn", [
    ({"SLURM_GPUS_ON_NODE": "4"}, 4),
    ({"SLURM_GPUS_PER_NODE": "gpu:4"}, 4),
    ({"SLURM_GPUS_PER_NODE": "a100:2"}, 2),
    ({"SLURM_GPUS_PER_NODE": "gpu:a100:2(x2)"}, 2),
    ({}, 0),
])
def test_slurm(gpu_env, gpn):
    env = {"SLURM_JOB_ID": "998", "SLURM_JOB_NODELIST": "gpu[01-04,07]", **gpu_env}
    info = _detector(env).detect()
    assert info.scheduler == "slurm" and info.job_id == "998"
    assert info.node_list == ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"]
    assert info.node_count == 5 and info.gpus_per_node == gpn and info.total_gpus == 5 * gpn


def test_pbs_takes_priority_over_dask_address(tmp_path):
    (tmp_path / "nodes").write_text("cn01\n")
    env = {"PBS_JOBID": "1", "PBS_NODEFILE": str(tmp_path / "nodes"),
           "DASK_SCHEDULER_ADDRESS": "tcp://h:8786"}
    assert _detector(env).detect().scheduler == "pbs"


def test_dask_address():
    info = _detector({"DASK_SCHEDULER_ADDRESS": "tcp://sched:8786"}).detect()
    assert info.scheduler == "dask" and info.address == "tcp://sched:8786"


def test_dask_client():
    client = FakeClient({
        "tcp://10.0.0.2:4001": {"host": "10.0.0.2", "resources": {"GPU": 1}},
        "tcp://10.0.0.2:4002": {"host": "10.0.0.2", "resources": {"GPU": 1}},
        "tcp://10.0.0.3:4001": {"resources": {"GPU": 1}},
        "tcp://10.0.0.3:4002": {},
    })
    info = _detector({"PBS_JOBID": "1"}).detect(client=client)
    assert info.scheduler == "dask" and info.address == "tcp://10.0.0.1:8786"
    assert info.node_list == ["10.0.0.2", "10.0.0.3"] and info.node_count == 2
    assert info.total_gpus == 3 and info.gpus_per_node == 1


def test_local_gpus():
    info = _detector({"CUDA_VISIBLE_DEVICES": "0,1"}).detect()
    assert info.scheduler == "local" and info.total_gpus == 2 and info.node_count == 1
    assert _detector({"CUDA_VISIBLE_DEVICES": ""}).detect() is None
    assert _detector({"CUDA_VISIBLE_DEVICES": "-1"}).detect() is None


def test_nvidia_smi_listing(monkeypatch, tmp_path):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: x)'\n"
                      "echo 'GPU 1: NVIDIA H100 (UUID: y)'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    info = ClusterDetector(environ={}).detect()
    assert info.total_gpus == 2 and info.scheduler == "local"


def test_plain_cpu_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    assert ClusterDetector(environ={}).detect() is None


def test_cluster_info_round_trip():
    info = ClusterInfo(node_count=2, gpus_per_node=4, total_gpus=8, node_list=["a", "b"],
                       scheduler="slurm", job_id="5", interconnect="infiniband")
    assert ClusterInfo.from_dict(info.to_dict()) == info
    with pytest.raises(ValueError, match=r"unknown ClusterInfo key 'nodes'; valid keys"):
        ClusterInfo.from_dict({"nodes": 2})
