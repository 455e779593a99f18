"""nlsq.yaml loading, NLSQ_* environment overrides and precedence."""

import textwrap

import pytest

from nlsq_dask.workflow import (
    OptimizationGoal,
    WorkflowConfig,
    WorkflowTier,
    get_env_overrides,
    load_yaml_config,
    resolve_config,
)
from nlsq_dask.workflow.loading import yaml_to_overrides

SPEC_YAML = """\
workflow:
  goal: robust
  memory_limit_gb: 16.0
  enable_checkpointing: true
  checkpoint_dir: ./checkpoints

tolerances:
  ftol: 1e-10
  xtol: 1e-10
  gtol: 1e-10

cluster:
  type: pbs
  nodes: 4
  gpus_per_node: 2
"""


def _write(tmp_path, text, name="nlsq.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_spec_example_loads_as_written(tmp_path):
    doc = load_yaml_config(_write(tmp_path, SPEC_YAML))
    assert doc["tolerances"] == {"ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10}
    assert isinstance(doc["tolerances"]["ftol"], float)
    over = yaml_to_overrides(doc)
    assert over == {
        "goal": "robust", "memory_limit_gb": 16.0, "enable_checkpoints": True,
        "checkpoint_dir": "./checkpoints", "ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10,
        "cluster": {"type": "pbs", "nodes": 4, "gpus_per_node": 2},
    }
    cfg = WorkflowConfig.from_dict(over)
    assert cfg.goal is OptimizationGoal.ROBUST and cfg.enable_checkpoints


def test_default_path_is_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_yaml_config() is None  # as NLSQ's
    _write(tmp_path, "workflow:\n  tier: chunked\n  chunk_size: 1e6\n")
    assert load_yaml_config() == {"workflow": {"tier": "chunked", "chunk_size": 1_000_000}}
    cfg = resolve_config(environ={})
    assert cfg.tier is WorkflowTier.CHUNKED and cfg.chunk_size == 1_000_000


def test_empty_yaml(tmp_path):
    assert load_yaml_config(_write(tmp_path, "")) == {}
    assert load_yaml_config(_write(tmp_path, "cluster:\n")) == {"cluster": {}}


@pytest.mark.parametrize(
    "text, match",
    [
        ("solver:\n  ftol: 1e-8\n", r"unknown section 'solver'.*workflow, tolerances, cluster"),
        ("workflow:\n  goals: fast\n", r"unknown key 'goals' in section 'workflow'.*valid keys"),
        ("tolerances:\n  rtol: 1e-8\n", r"unknown key 'rtol' in section 'tolerances'.*ftol, xtol"),
        ("cluster:\n  queues: long\n", r"unknown key 'queues' in section 'cluster'"),
        ("tolerances:\n  ftol: tiny\n", r"tolerances.ftol must be a number; got 'tiny'"),
        ("- a\n- b\n", r"must contain a mapping of sections; got list"),
        ("workflow: fast\n", r"section 'workflow' .* must be a mapping; got str"),
    ],
)
def test_bad_yaml(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_yaml_config(_write(tmp_path, text))


def test_bad_yaml_values_reach_config(tmp_path):
    path = _write(tmp_path, "workflow:\n  goal: speedy\n")
    with pytest.raises(ValueError, match=r"goal='speedy' is not a valid OptimizationGoal"):
        resolve_config(yaml_path=path, environ={})
    path = _write(tmp_path, "workflow:\n  preset: turbo\n")
    with pytest.raises(ValueError, match=r"preset='turbo' is not a known preset"):
        resolve_config(yaml_path=path, environ={})


def test_missing_explicit_path(tmp_path):
    assert load_yaml_config(tmp_path / "nope.yaml") is None  # as NLSQ's
    with pytest.raises(FileNotFoundError, match="yaml_path .* does not exist"):
        resolve_config(yaml_path=tmp_path / "nope.yaml", environ={})


def test_yaml_cannot_build_objects(tmp_path):
    path = _write(tmp_path, "workflow:\n  goal: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(Exception, match="could not determine a constructor"):
        load_yaml_config(path)


def test_env_overrides():
    env = {"NLSQ_WORKFLOW_GOAL": "Quality", "NLSQ_MEMORY_LIMIT_GB": "12.5",
           "NLSQ_CHECKPOINT_DIR": "/scratch/ck", "NLSQ_ENABLE_CHECKPOINTING": "1",
           "UNRELATED": "x"}
    assert get_env_overrides(env) == {
        "goal": "QUALITY", "memory_limit_gb": 12.5,
        "checkpoint_dir": "/scratch/ck", "enable_checkpoints": True}
    assert get_env_overrides({}) == {}
    assert get_env_overrides({"NLSQ_WORKFLOW_GOAL": ""}) == {}
    for text, val in [("0", False), ("false", False), ("NO", False), ("yes", True),
                      ("true", True)]:
        assert get_env_overrides({"NLSQ_ENABLE_CHECKPOINTING": text}) == {
            "enable_checkpoints": val}


@pytest.mark.parametrize(
    "env, match",
    [
        ({"NLSQ_MEMORY_LIMIT_GB": "lots"}, r"NLSQ_MEMORY_LIMIT_GB='lots' must be a positive"),
        ({"NLSQ_MEMORY_LIMIT_GB": "-4"}, r"NLSQ_MEMORY_LIMIT_GB='-4' must be a positive"),
        ({"NLSQ_ENABLE_CHECKPOINTING": "maybe"}, r"NLSQ_ENABLE_CHECKPOINTING='maybe' is not a"),
    ],
)
def test_env_errors(env, match):
    with pytest.raises(ValueError, match=match):
        get_env_overrides(env)


def test_bad_env_goal_warns_and_is_ignored():
    with pytest.warns(UserWarning, match=r"NLSQ_WORKFLOW_GOAL='speedy' is not a valid"):
        assert get_env_overrides({"NLSQ_WORKFLOW_GOAL": "speedy"}) == {}


def test_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray ./nlsq.yaml
    yaml_path = _write(tmp_path, """\
        workflow:
          preset: robust
          goal: quality
          memory_limit_gb: 32
          split_every: 4
          chunk_size: 100000
        tolerances:
          ftol: 1e-9
        cluster:
          nodes: 4
        """, name="my.yaml")
    env = {"NLSQ_MEMORY_LIMIT_GB": "8", "NLSQ_WORKFLOW_GOAL": "fast"}

    # defaults only
    assert resolve_config(environ={}) == WorkflowConfig()
    # preset > defaults
    assert resolve_config(preset="global", environ={}).n_starts == 20
    # yaml > preset (yaml's own preset is used when no preset argument is given)
    cfg = resolve_config(yaml_path=yaml_path, environ={})
    assert cfg.n_starts == 5 and cfg.enable_multistart  # from yaml's preset robust
    assert cfg.goal is OptimizationGoal.QUALITY  # yaml beats preset's goal
    assert (cfg.memory_limit_gb, cfg.split_every, cfg.ftol) == (32.0, 4, 1e-9)
    # the preset argument beats the yaml's preset, but not the yaml's fields
    cfg = resolve_config(preset="hpc", yaml_path=yaml_path, environ={})
    assert not cfg.enable_multistart and cfg.enable_checkpoints
    assert cfg.goal is OptimizationGoal.QUALITY
    assert cfg.cluster == {"type": "pbs", "nodes": 4}  # merged key by key
    # env > yaml
    cfg = resolve_config(yaml_path=yaml_path, environ=env)
    assert cfg.memory_limit_gb == 8.0 and cfg.goal is OptimizationGoal.FAST
    assert cfg.split_every == 4
    # explicit config object (non-default fields) > env
    cfg = resolve_config(yaml_path=yaml_path, environ=env,
                         config=WorkflowConfig(memory_limit_gb=2.0, tier="streaming"))
    assert cfg.memory_limit_gb == 2.0 and cfg.tier is WorkflowTier.STREAMING
    assert cfg.goal is OptimizationGoal.FAST  # config left goal at default: env stays
    # explicit keyword overrides > config object; None values ignored
    cfg = resolve_config(yaml_path=yaml_path, environ=env,
                         config=WorkflowConfig(memory_limit_gb=2.0),
                         overrides={"memory_limit_gb": 1.0, "chunk_size": None,
                                    "goal": "global"})
    assert cfg.memory_limit_gb == 1.0 and cfg.chunk_size == 100_000
    assert cfg.goal is OptimizationGoal.GLOBAL


def test_resolve_config_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"unknown override key 'ftoll'"):
        resolve_config(overrides={"ftoll": 1e-3}, environ={})
    with pytest.raises(TypeError, match="config must be a WorkflowConfig; got dict"):
        resolve_config(config={"tier": "standard"}, environ={})
