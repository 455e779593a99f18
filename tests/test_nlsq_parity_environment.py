"""Parity with NLSQ v0.5.3's environment half of ``nlsq.core.workflow``.

Each test names the NLSQ behaviour it checks (cluster detection, YAML layouts,
environment overrides); where this package deliberately differs, the test
shows ours and says so.
"""

import subprocess
import sys
import textwrap
import types

import pytest

from nlsq_dask.workflow import (
    ClusterDetector,
    ClusterInfo,
    OptimizationGoal,
    WorkflowTier,
    get_env_overrides,
    load_yaml_config,
    resolve_config,
)
from nlsq_dask.workflow.loading import (
    get_custom_workflow,
    load_config_with_overrides,
    validate_custom_workflow,
)

#: NLSQ's own ClusterInfo.to_dict keys
NLSQ_CLUSTER_KEYS = {"node_count", "gpus_per_node", "total_gpus", "node_list", "scheduler",
                     "job_id", "interconnect"}

#: the flat layout of NLSQ's load_yaml_config docstring and tests
NLSQ_FLAT_YAML = """\
default_workflow: quality
memory_limit_gb: 32.0

workflows:
  my_custom:
    tier: CHUNKED
    goal: QUALITY
    enable_multistart: true
    n_starts: 15
    sampler: sobol
    gtol: 1e-9
    ftol: 1.0e-9
    xtol: 1.0e-9
"""


def _write(tmp_path, text, name="nlsq.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _nodefile(tmp_path, text):
    path = tmp_path / "nodefile"
    path.write_text(text)
    return str(path)


def _fake_jax(monkeypatch, platforms):
    """Put a stand-in ``jax`` whose devices() lists ``platforms`` (or raises)."""
    def devices():
        if isinstance(platforms, Exception):
            raise platforms
        return [types.SimpleNamespace(platform=p) for p in platforms]
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(devices=devices))


# ----------------------------------------------------------------- cluster detection
def test_default_gpus_per_node_fills_a_pbs_job_without_a_gpu_count(tmp_path, monkeypatch):
    # NLSQ: ClusterDetector(default_gpus_per_node=8) on a PBS node file, JAX seeing no GPU
    env = {"PBS_NODEFILE": _nodefile(tmp_path, "node01\nnode01\nnode02\nnode02\nnode03\n"),
           "PBS_JOBID": "12345.pbs_server"}
    detector = ClusterDetector(environ=env, default_gpus_per_node=8)
    monkeypatch.setattr(detector, "_detect_gpus_per_node", lambda: 0)
    info = detector.detect_pbs()
    assert (info.node_count, info.gpus_per_node, info.total_gpus) == (3, 8, 24)
    assert info.node_list == ["node01", "node02", "node03"]
    assert (info.scheduler, info.job_id) == ("pbs", "12345.pbs_server")
    # our default guesses no GPUs (NLSQ's is 8): a CPU-only PBS job gets no GPU workers
    detector = ClusterDetector(environ=env)
    monkeypatch.setattr(detector, "_detect_gpus_per_node", lambda: 0)
    assert detector.detect_pbs().total_gpus == 0


@pytest.mark.parametrize("bad", [-1, 2.0, True, "8"])
def test_default_gpus_per_node_is_checked(bad):
    with pytest.raises(ValueError, match=r"default_gpus_per_node must be an integer >= 0"):
        ClusterDetector(default_gpus_per_node=bad)


def test_is_pbs_environment(tmp_path, monkeypatch):
    # NLSQ: True when PBS_NODEFILE is set
    assert ClusterDetector(environ={"PBS_NODEFILE": "/x"}).is_pbs_environment() is True
    assert ClusterDetector(environ={"PBS_JOBID": "1"}).is_pbs_environment() is False
    assert ClusterDetector(environ={}).is_pbs_environment() is False
    # without environ= it reads os.environ at each call, as NLSQ does
    detector = ClusterDetector()
    monkeypatch.delenv("PBS_NODEFILE", raising=False)
    monkeypatch.delenv("PBS_JOBID", raising=False)
    assert detector.is_pbs_environment() is False
    monkeypatch.setenv("PBS_NODEFILE", str(tmp_path / "nodes"))
    assert detector.is_pbs_environment() is True


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_no_usable_pbs_node_file_is_none(tmp_path, content):
    # NLSQ: detect_pbs() is None for a missing or empty PBS_NODEFILE
    path = tmp_path / "nodefile"
    if content is not None:
        path.write_text(content)
    detector = ClusterDetector(environ={"PBS_NODEFILE": str(path), "PBS_JOBID": "1"},
                               use_nvidia_smi=False)
    assert detector.detect_pbs() is None
    # detect() goes on to the other probes (NLSQ stops there with None)
    env = {"PBS_NODEFILE": str(path), "SLURM_JOB_ID": "9", "SLURM_JOB_NODELIST": "n[1-2]"}
    assert ClusterDetector(environ=env, use_nvidia_smi=False).detect().scheduler == "slurm"


def test_pbs_gpus_from_jax_when_pbs_ngpus_is_unset(tmp_path, monkeypatch):
    # NLSQ counts a PBS node's GPUs with jax.devices() (non-CPU devices)
    env = {"PBS_NODEFILE": _nodefile(tmp_path, "a\nb\n")}
    _fake_jax(monkeypatch, ["gpu", "gpu", "cpu"])
    info = ClusterDetector(environ=env, default_gpus_per_node=8).detect()
    assert (info.scheduler, info.gpus_per_node, info.total_gpus) == ("pbs", 2, 4)
    # PBS_NGPUS, when set, is the count and JAX is not asked
    _fake_jax(monkeypatch, AssertionError("jax.devices() called"))
    info = ClusterDetector(environ={**env, "PBS_NGPUS": "4"}).detect()
    assert (info.gpus_per_node, info.total_gpus) == (4, 8)
    info = ClusterDetector(environ={**env, "PBS_NGPUS": "0"}, default_gpus_per_node=8).detect()
    assert info.total_gpus == 0


def test_jax_gpu_count(monkeypatch):
    # NLSQ: _detect_gpus_per_node() counts JAX's non-CPU devices; 0 when JAX fails
    detector = ClusterDetector(environ={})
    _fake_jax(monkeypatch, ["gpu", "gpu", "gpu", "gpu"])
    assert detector._detect_gpus_per_node() == 4
    _fake_jax(monkeypatch, RuntimeError("no backend"))
    assert detector._detect_gpus_per_node() == 0
    _fake_jax(monkeypatch, AssertionError("probed"))
    assert ClusterDetector(environ={}, use_nvidia_smi=False)._detect_gpus_per_node() == 0


def test_jax_is_imported_only_to_count_a_pbs_jobs_gpus(tmp_path):
    nodefile = _nodefile(tmp_path, "cn01\n")
    code = (
        "import sys\n"
        "from nlsq_dask.workflow import ClusterDetector\n"
        f"env = {{'PBS_NODEFILE': {nodefile!r}, 'PBS_NGPUS': '2'}}\n"
        "assert ClusterDetector(environ=env).detect().total_gpus == 2\n"
        "assert ClusterDetector(environ={}, use_nvidia_smi=False).detect() is None\n"
        "assert 'jax' not in sys.modules\n"
        "del env['PBS_NGPUS']\n"
        "ClusterDetector(environ=env).detect()\n"
        "assert 'jax' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_detect_outside_any_cluster_is_none(monkeypatch):
    # NLSQ: detect() is None when not in PBS and no GPU is seen
    detector = ClusterDetector(environ={}, use_nvidia_smi=False)
    monkeypatch.setattr(detector, "_detect_gpus_per_node", lambda: 0)
    assert detector.is_pbs_environment() is False and detector.detect() is None


def test_open_mpi_infiniband_interconnect():
    # NLSQ: OMPI_MCA_btl_openib_allow_ib set means infiniband
    detector = ClusterDetector(environ={"OMPI_MCA_btl_openib_allow_ib": "1"})
    assert detector._detect_interconnect() == "infiniband"


def test_cluster_info_as_nlsq_builds_and_reads_it():
    # NLSQ's positional order, its 'unknown' scheduler default, its to_dict keys
    info = ClusterInfo(3, 4, 12, ["n1", "n2", "n3"])
    assert info.scheduler == "unknown" and info.job_id is None and info.interconnect is None
    d = info.to_dict()
    assert NLSQ_CLUSTER_KEYS <= set(d)
    nlsq_dict = {k: d[k] for k in NLSQ_CLUSTER_KEYS}
    assert ClusterInfo.from_dict(nlsq_dict) == info
    assert ClusterInfo.from_dict({"node_count": 2}).gpus_per_node == 0


# ----------------------------------------------------------------- yaml layouts
def test_nlsq_flat_layout_loads(tmp_path):
    # NLSQ: load_yaml_config returns the document with its top-level keys
    config = load_yaml_config(_write(tmp_path, NLSQ_FLAT_YAML))
    assert config.get("default_workflow") == "quality"
    assert config.get("memory_limit_gb") == 32.0
    custom = config["workflows"]["my_custom"]
    assert custom["n_starts"] == 15 and custom["gtol"] == 1e-9  # '1e-9' read as a number


def test_nlsq_flat_layout_reaches_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, NLSQ_FLAT_YAML)
    cfg = resolve_config(environ={})  # ./nlsq.yaml
    assert cfg.goal is OptimizationGoal.QUALITY and cfg.validation_passes == 3  # quality preset
    assert cfg.memory_limit_gb == 32.0
    path = _write(tmp_path, "goal: fast\nftol: 1e-6\ntier: streaming\n", name="flat.yaml")
    cfg = resolve_config(yaml_path=path, environ={})
    assert (cfg.goal, cfg.ftol, cfg.tier) == (OptimizationGoal.FAST, 1e-6, WorkflowTier.STREAMING)


def test_spec_and_flat_layouts_mix_but_a_key_is_given_once(tmp_path):
    path = _write(tmp_path, "memory_limit_gb: 8\ntolerances:\n  ftol: 1e-9\n")
    cfg = resolve_config(yaml_path=path, environ={})
    assert (cfg.memory_limit_gb, cfg.ftol) == (8.0, 1e-9)
    path = _write(tmp_path, "goal: fast\nworkflow:\n  goal: robust\n")
    with pytest.raises(ValueError, match=r"'goal' is given twice .* top level and in section"):
        load_yaml_config(path)
    path = _write(tmp_path, "default_workflow: fast\nworkflow:\n  preset: robust\n")
    with pytest.raises(ValueError, match=r"names its preset twice"):
        load_yaml_config(path)
    with pytest.raises(ValueError, match=r"unknown section 'goals'.*did you mean 'goal'.*"
                                         r"flat layout also takes default_workflow"):
        load_yaml_config(_write(tmp_path, "goals: fast\n"))
    with pytest.raises(ValueError, match=r"unknown key 'n_start' in workflow 'w' of section "
                                         r"'workflows'.*did you mean 'n_starts'"):
        load_yaml_config(_write(tmp_path, "workflows:\n  w:\n    n_start: 3\n"))
    with pytest.raises(ValueError, match=r"default_workflow in .* must be the name of a preset"):
        load_yaml_config(_write(tmp_path, "default_workflow: [a]\n"))


def test_workflows_section_by_name(tmp_path):
    # NLSQ's workflows: a named workflow, chosen by preset= or default_workflow
    path = _write(tmp_path, NLSQ_FLAT_YAML)
    cfg = resolve_config(preset="my_custom", yaml_path=path, environ={})
    assert cfg.tier is WorkflowTier.CHUNKED and cfg.goal is OptimizationGoal.QUALITY
    assert (cfg.enable_multistart, cfg.n_starts, cfg.sampler, cfg.gtol) == (True, 15, "sobol", 1e-9)
    assert cfg.memory_limit_gb == 32.0  # the yaml's own fields are on top
    path = _write(tmp_path, "default_workflow: mine\nworkflows:\n  mine:\n    preset: robust\n"
                            "    sampler: halton\n", name="mine.yaml")
    cfg = resolve_config(yaml_path=path, environ={})
    assert (cfg.n_starts, cfg.enable_multistart, cfg.sampler) == (5, True, "halton")
    with pytest.raises(ValueError, match=r"preset='other' is not a known preset.*"
                                         r"or a workflow of the yaml's 'workflows' section: 'mine'"):
        resolve_config(preset="other", yaml_path=path, environ={})


def test_get_custom_workflow(tmp_path):
    # NLSQ: get_custom_workflow(name, path): a WorkflowConfig, None if absent, warn if invalid
    path = _write(tmp_path, NLSQ_FLAT_YAML)
    cfg = get_custom_workflow("my_custom", path)
    assert cfg.tier is WorkflowTier.CHUNKED and cfg.goal is OptimizationGoal.QUALITY
    assert (cfg.enable_multistart, cfg.n_starts, cfg.gtol, cfg.sampler) == (True, 15, 1e-9, "sobol")
    assert cfg.preset == "custom:my_custom"
    assert get_custom_workflow("nonexistent_workflow", path) is None
    bad = _write(tmp_path, "workflows:\n  broken:\n    tier: INVALID_TIER\n", name="bad.yaml")
    with pytest.warns(UserWarning, match=r"Invalid custom workflow 'broken': tier='INVALID_TIER'"):
        assert get_custom_workflow("broken", bad) is None


def test_validate_custom_workflow():
    # NLSQ: (True, None) or (False, message)
    assert validate_custom_workflow({"tier": "CHUNKED", "goal": "QUALITY",
                                     "enable_multistart": True, "n_starts": 15}) == (True, None)
    ok, error = validate_custom_workflow({"tier": "INVALID_TIER"})
    assert ok is False and "INVALID_TIER" in error
    ok, error = validate_custom_workflow({"tiers": "chunked"})
    assert ok is False and "unknown key 'tiers'" in error


def test_missing_yaml(tmp_path, monkeypatch):
    # NLSQ: load_yaml_config returns None for a missing file; resolve_config's yaml_path= raises
    monkeypatch.chdir(tmp_path)
    assert load_yaml_config() is None
    assert load_yaml_config(tmp_path / "nope.yaml") is None
    assert load_yaml_config(config_path=tmp_path / "nope.yaml") is None
    assert get_custom_workflow("w", tmp_path / "nope.yaml") is None
    with pytest.raises(FileNotFoundError, match=r"yaml_path '.*nope.yaml' does not exist"):
        resolve_config(yaml_path=tmp_path / "nope.yaml", environ={})


# ----------------------------------------------------------------- environment
def test_env_overrides_in_nlsq_form(monkeypatch):
    # NLSQ: get_env_overrides() reads os.environ: goal, memory_limit_gb, default_workflow
    for name in ("NLSQ_CHECKPOINT_DIR", "NLSQ_ENABLE_CHECKPOINTING", "NLSQ_COMPILATION_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NLSQ_WORKFLOW_GOAL", "quality")
    monkeypatch.setenv("NLSQ_MEMORY_LIMIT_GB", "16.0")
    monkeypatch.setenv("NLSQ_DEFAULT_WORKFLOW", "Robust")
    overrides = get_env_overrides()
    assert overrides == {"goal": "QUALITY", "memory_limit_gb": 16.0,
                         "default_workflow": "robust"}


def test_bad_env_goal_warns_and_is_ignored(monkeypatch):
    # NLSQ: a UserWarning, and no goal
    monkeypatch.setenv("NLSQ_WORKFLOW_GOAL", "speedy")
    with pytest.warns(UserWarning, match=r"NLSQ_WORKFLOW_GOAL='speedy'"):
        assert "goal" not in get_env_overrides()
    with pytest.warns(UserWarning):
        assert resolve_config(environ={"NLSQ_WORKFLOW_GOAL": "speedy"}).goal is None


def test_load_config_with_overrides(tmp_path):
    # NLSQ: the yaml's keys with the environment's on top
    path = _write(tmp_path, "goal: FAST\nmemory_limit_gb: 64.0\n")
    config = load_config_with_overrides(path, environ={"NLSQ_WORKFLOW_GOAL": "quality"})
    assert config["goal"] == "QUALITY" and config["memory_limit_gb"] == 64.0


def test_nlsq_default_workflow_sets_the_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"NLSQ_DEFAULT_WORKFLOW": "GLOBAL"}
    cfg = resolve_config(environ=env)
    assert (cfg.goal, cfg.n_starts) == (OptimizationGoal.GLOBAL, 20)
    assert resolve_config(preset="fast", environ=env).goal is OptimizationGoal.FAST
    yaml_path = _write(tmp_path, "default_workflow: robust\nn_starts: 7\n", name="my.yaml")
    cfg = resolve_config(yaml_path=yaml_path, environ=env)  # env's preset beats the yaml's,
    assert cfg.goal is OptimizationGoal.GLOBAL and cfg.n_starts == 7  # the yaml's fields beat it
    with pytest.raises(ValueError, match=r"NLSQ_DEFAULT_WORKFLOW='turbo' is not a known preset"):
        resolve_config(environ={"NLSQ_DEFAULT_WORKFLOW": "turbo"})
