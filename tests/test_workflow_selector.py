"""Tier selection from the explicit memory model, partition sizing and explanations.

Machines posed here (GiB = 2**30 bytes), safety fraction 0.5, 10 parameters, 1-D x,
float64, no sigma, so data = 16 N bytes and the standard peak = 96 N + 800 bytes:

* 8 GB laptop: STANDARD while 96 N <= 4 GiB (N <= 4.47e7); CHUNKED (persisted locally)
  while 16 N <= 4 GiB (N <= 2.68e8); else STREAMING.
* 24 GB box: STANDARD while 96 N <= 12 GiB (N <= 1.34e8); CHUNKED while 16 N <= 12 GiB
  (N <= 8.05e8); else STREAMING.
* 4 x 256 GB workers, client with 16 GB: STANDARD while 96 N <= 8 GiB (N <= 8.9e7);
  CHUNKED while 16 N <= 512 GiB (N <= 3.4e10); else STREAMING.
* 80 GB GPU on a 128 GB host: STANDARD while 96 N <= 40 GiB (N <= 4.47e8); CHUNKED while
  16 N <= 64 GiB (N <= 4.3e9); else STREAMING.
"""

import json

import pytest

from nlsq_dask.workflow import (
    DatasetProfile,
    ResourceSnapshot,
    Selection,
    WorkflowConfig,
    WorkflowSelector,
    WorkflowTier,
    auto_select_workflow,
)
from nlsq_dask.workflow.selector import format_bytes

S, C, T = "standard", "chunked", "streaming"
MACHINES = {
    "laptop_8gb": ResourceSnapshot(host_memory_gb=8.0, n_threads=4),
    "box_24gb": ResourceSnapshot(host_memory_gb=24.0, n_threads=8),
    "cluster_4x256gb": ResourceSnapshot(host_memory_gb=16.0, n_threads=128,
                                        worker_memory_gb=(256.0,) * 4),
    "gpu_80gb": ResourceSnapshot(host_memory_gb=128.0, gpu_memory_gb=80.0, n_gpus=1,
                                 n_threads=16),
}
SIZES = [10**e for e in range(3, 12)]
EXPECTED = {  # 1e3 1e4 1e5 1e6 1e7 1e8 1e9 1e10 1e11
    "laptop_8gb": [S, S, S, S, S, C, T, T, T],
    "box_24gb": [S, S, S, S, S, S, T, T, T],
    "cluster_4x256gb": [S, S, S, S, S, C, C, C, T],
    "gpu_80gb": [S, S, S, S, S, S, C, T, T],
}


def _select(n, machine, config=None, **profile_kw):
    profile = DatasetProfile(n_points=n, n_params=10, **profile_kw)
    return WorkflowSelector().select(profile, MACHINES[machine], config)


@pytest.mark.parametrize("machine", list(MACHINES))
def test_tier_table(machine):
    got = [_select(n, machine).tier.value for n in SIZES]
    assert got == EXPECTED[machine]


def _model_tier(n, r, s=0.5, p=10):
    """Independent restatement of the DESIGN §4 model."""
    data, peak = 16 * n, 16 * n + 8 * n * p + 8 * p * p
    local = (r.gpu_memory_gb / r.n_gpus if r.n_gpus else r.host_memory_gb) * 2**30
    host = r.host_memory_gb * 2**30
    if peak <= s * local and data <= s * host:
        return S
    pool = sum(r.worker_memory_gb) * 2**30 if r.worker_memory_gb else host
    return C if data <= s * pool else T


@pytest.mark.parametrize("machine", list(MACHINES))
@pytest.mark.parametrize("n", [3 * 10**e for e in range(3, 11)] + [44_700_000, 44_800_000])
def test_tier_matches_model(machine, n):
    assert _select(n, machine).tier.value == _model_tier(n, MACHINES[machine])


def test_reasons_carry_numbers():
    sel = _select(10**8, "laptop_8gb")
    text = " ".join(sel.reasons)
    assert format_bytes(96 * 10**8 + 800) in text  # standard peak
    assert format_bytes(16 * 10**8) in text  # data
    assert "4 GiB" in text  # 0.5 x 8 GiB
    sel = _select(10**9, "cluster_4x256gb")
    assert "4 workers" in " ".join(sel.reasons) and "512 GiB" in " ".join(sel.reasons)
    sel = _select(10**6, "gpu_80gb")
    assert "GPU" in sel.reasons[0] and "40 GiB" in sel.reasons[0]


def test_partition_sizes():
    # 8 GiB / 4 threads * 0.5 = 1 GiB > 256 MiB cap; 104 bytes/point
    sel = _select(10**8, "laptop_8gb")
    assert sel.partition_points == (256 * 2**20 // 104) // 4096 * 4096 == 2_580_480
    # small workers: 1 GiB / 8 threads * 0.5 = 64 MiB
    small = ResourceSnapshot(host_memory_gb=1.0, n_threads=16, worker_memory_gb=(1.0, 1.0))
    sel = WorkflowSelector().select(DatasetProfile(10**9, 10), small)
    assert sel.tier is WorkflowTier.STREAMING
    assert sel.partition_points == (64 * 2**20 // 104) // 4096 * 4096
    assert sel.partition_points % 4096 == 0
    # never below one tile, never far above the data
    tiny = ResourceSnapshot(host_memory_gb=0.001, n_threads=64)
    sel = WorkflowSelector().select(DatasetProfile(10**6, 10), tiny)
    assert sel.partition_points == 4096
    sel = _select(5000, "laptop_8gb", WorkflowConfig(tier="chunked"))
    assert sel.partition_points == 8192
    # STANDARD uses the whole dataset
    assert _select(12345, "laptop_8gb").partition_points == 12345


def test_partition_from_chunk_size_and_lazy_chunks():
    cfg = WorkflowConfig(chunk_size=50_000)
    assert _select(10**9, "laptop_8gb", cfg).partition_points == 50_000
    sel = _select(10**9, "laptop_8gb", lazy=True, partition_points=1_000_000, n_partitions=1000)
    assert sel.partition_points == 1_000_000 and "data's own chunks" in sel.reasons[-1]


def test_requested_tier_and_checkpoints():
    sel = _select(100, "laptop_8gb", WorkflowConfig(tier="streaming"))
    assert sel.tier is WorkflowTier.STREAMING and "requested" in sel.reasons[0]
    sel = _select(100, "laptop_8gb", WorkflowConfig(tier="streaming", enable_checkpoints=True))
    assert sel.tier is WorkflowTier.STREAMING_CHECKPOINT
    sel = _select(10**10, "laptop_8gb", WorkflowConfig(enable_checkpoints=True))
    assert sel.tier is WorkflowTier.STREAMING_CHECKPOINT
    sel = _select(100, "laptop_8gb", WorkflowConfig(tier="streaming_checkpoint"))
    assert sel.config.enable_checkpoints and sel.config.tier is WorkflowTier.STREAMING_CHECKPOINT
    # a standard fit has no passes to store: with checkpoints it runs chunked, and says so
    sel = _select(100, "laptop_8gb", WorkflowConfig(enable_checkpoints=True))
    assert sel.tier is WorkflowTier.CHUNKED and sel.config.tier is WorkflowTier.CHUNKED
    assert "checkpointing is enabled" in sel.reasons[-2] and sel.partition_points >= 1
    sel = _select(100, "laptop_8gb", WorkflowConfig(tier="standard", enable_checkpoints=True))
    assert sel.tier is WorkflowTier.CHUNKED
    assert _select(100, "laptop_8gb", WorkflowConfig(enable_checkpoints=False)).tier.value == S


def test_memory_efficient_goal():
    cfg = WorkflowConfig(goal="memory_efficient")
    assert _select(1000, "laptop_8gb", cfg).tier is WorkflowTier.STANDARD
    sel = _select(10**7, "laptop_8gb", cfg)  # 0.96 GB > 4 GiB / 8
    assert sel.tier is WorkflowTier.STREAMING
    assert sel.partition_points == (64 * 2**20 // 104) // 4096 * 4096


def test_memory_limit_in_config_caps_host():
    sel = _select(10**7, "box_24gb", WorkflowConfig(memory_limit_gb=1.0))
    assert sel.tier is WorkflowTier.CHUNKED  # 0.96 GB > 0.5 GiB, data 160 MB fits


def test_resolved_config():
    sel = _select(50_000, "laptop_8gb", WorkflowConfig(goal="quality", xtol=1e-4))
    c = sel.config
    assert c.tier is WorkflowTier.STANDARD
    assert (c.ftol, c.xtol, c.gtol) == (1e-10, 1e-4, 1e-10)
    assert c.validation_passes == 3
    assert _select(50_000, "laptop_8gb", WorkflowConfig(goal="robust")).config.n_starts == 5


def test_explain_and_to_dict():
    sel = _select(10**9, "cluster_4x256gb", WorkflowConfig(goal="fast"))
    text = sel.explain()
    for piece in ("1,000,000,000 points", "data: 14.9 GiB", "Jacobian: 74.5 GiB",
                  "workers 1 TiB on 4", "safety fraction 0.5", "tier: chunked",
                  "partition:", "ftol=1e-05", "goal fast"):
        assert piece in text, piece
    assert len(text.splitlines()) >= 7
    d = json.loads(json.dumps(sel.to_dict()))
    assert d["tier"] == "chunked" and d["config"]["tier"] == "chunked"
    assert d["profile"]["n_points"] == 10**9


def test_auto_select_workflow():
    sel = auto_select_workflow(10**6, 3, goal="fast", memory_limit_gb=4.0,
                               resources=MACHINES["box_24gb"])
    assert isinstance(sel, Selection) and sel.tier is WorkflowTier.STANDARD
    assert sel.config.goal.value == "fast" and sel.config.memory_limit_gb == 4.0
    assert sel.config.ftol == 1e-5
    sel = auto_select_workflow(10**4, 2, has_sigma=True, n_inputs=2, itemsize=4)
    assert sel.profile.data_bytes == 10**4 * 4 * 4
    assert sel.tier is WorkflowTier.STANDARD


def test_profile_bytes():
    p = DatasetProfile(1000, 4, n_inputs=3, itemsize=4, has_sigma=True)
    assert p.data_bytes == 1000 * 5 * 4 and p.jacobian_bytes == 1000 * 4 * 8
    assert p.peak_standard_bytes == p.data_bytes + p.jacobian_bytes + 16 * 8


@pytest.mark.parametrize("kw, exc, match", [
    ({"n_points": -1, "n_params": 2}, ValueError, "n_points must be an integer >= 0; got -1"),
    ({"n_points": 10, "n_params": 0}, ValueError, "n_params must be an integer >= 1"),
    ({"n_points": 1.5, "n_params": 2}, TypeError, "n_points must be an integer >= 0; got float"),
    ({"n_points": 10, "n_params": 2, "partition_points": 0}, ValueError, "partition_points"),
])
def test_profile_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        DatasetProfile(**kw)


def test_selector_errors():
    with pytest.raises(ValueError, match=r"safety_fraction must be a number in \(0, 1\]"):
        WorkflowSelector(safety_fraction=1.5)
    sel = WorkflowSelector()
    with pytest.raises(TypeError, match="profile must be a DatasetProfile; got dict"):
        sel.select({"n_points": 1}, MACHINES["laptop_8gb"])
    with pytest.raises(TypeError, match="resources must be a ResourceSnapshot"):
        sel.select(DatasetProfile(1, 1), 8.0)
    with pytest.raises(TypeError, match="config must be a WorkflowConfig"):
        sel.select(DatasetProfile(1, 1), MACHINES["laptop_8gb"], {"tier": "standard"})
