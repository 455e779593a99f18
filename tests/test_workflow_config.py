"""WorkflowConfig validation, conversion, presets and tolerances."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlsq_dask.workflow import (
    WORKFLOW_PRESETS,
    OptimizationGoal,
    WorkflowConfig,
    WorkflowTier,
)

SPEC_PRESETS = {"fast", "robust", "global", "memory_efficient", "quality", "hpc", "streaming"}


def test_defaults():
    c = WorkflowConfig()
    assert c.tier is None and c.goal is None
    assert (c.ftol, c.xtol, c.gtol) == (None, None, None)
    assert c.n_starts == 10 and not c.enable_multistart
    assert c.split_every == 8 and c.reduction == "normal" and c.loss == "linear"


def test_enum_strings_are_coerced():
    c = WorkflowConfig(tier="STREAMING", goal="Quality", sampler="SOBOL", loss="Huber")
    assert c.tier is WorkflowTier.STREAMING
    assert c.goal is OptimizationGoal.QUALITY
    assert c.sampler == "sobol" and c.loss == "huber"


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"tier": "fastest"}, ValueError, r"tier='fastest' is not a valid WorkflowTier"),
        ({"goal": 1}, TypeError, r"goal must be a OptimizationGoal"),
        ({"ftol": float("inf")}, ValueError, r"ftol must be a non-negative finite number; got inf"),
        ({"gtol": -1e-8}, ValueError, r"gtol must be a non-negative"),
        ({"xtol": "1e-8"}, TypeError, r"xtol must be a non-negative number; got str"),
        ({"n_starts": -1}, ValueError, r"n_starts must be an integer >= 0; got -1"),
        ({"n_starts": 2.0}, TypeError, r"n_starts must be an integer >= 0; got float"),
        ({"sampler": "random"}, ValueError, r"sampler='random' is not valid.*'lhs', 'sobol'"),
        ({"reduction": "svd"}, ValueError, r"reduction='svd' is not valid.*'normal', 'qr'"),
        ({"loss": "l2"}, ValueError, r"loss='l2' is not valid.*'soft_l1'"),
        ({"split_every": 1}, ValueError, r"split_every must be an integer >= 2"),
        ({"enable_multistart": "yes"}, TypeError, r"enable_multistart must be a bool"),
        ({"memory_limit_gb": 0}, ValueError, r"memory_limit_gb must be a positive"),
        ({"chunk_size": 0}, ValueError, r"chunk_size must be an integer >= 1"),
        ({"validation_passes": -1}, ValueError, r"validation_passes must be an integer >= 0"),
        ({"f_scale": float("nan")}, ValueError, r"f_scale must be a positive finite"),
        ({"checkpoint_dir": 3}, TypeError, r"checkpoint_dir must be a str or None"),
        ({"cluster": {"type": "sge"}}, ValueError, r"cluster type='sge' is not valid"),
        ({"cluster": {"nodez": 2}}, ValueError, r"unknown cluster key 'nodez'; valid keys"),
        ({"cluster": {"nodes": 0}}, ValueError, r"cluster nodes must be an integer >= 1"),
        ({"cluster": "pbs"}, TypeError, r"cluster must be a dict"),
    ],
)
def test_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        WorkflowConfig(**kwargs)


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match=r"unknown WorkflowConfig key 'tolerance'; valid keys"):
        WorkflowConfig.from_dict({"tolerance": 1e-8})
    with pytest.raises(TypeError, match="d must be a dict"):
        WorkflowConfig.from_dict([("tier", "standard")])


def test_with_overrides():
    c = WorkflowConfig(goal="robust").with_overrides(tier="chunked", n_starts=3)
    assert c.tier is WorkflowTier.CHUNKED and c.n_starts == 3 and c.goal.value == "robust"
    with pytest.raises(ValueError, match=r"unknown WorkflowConfig key 'nstarts'"):
        c.with_overrides(nstarts=3)
    with pytest.raises(ValueError, match=r"n_starts must be an integer >= 0"):
        c.with_overrides(n_starts=-2)


def test_presets_match_spec():
    assert set(WORKFLOW_PRESETS) == SPEC_PRESETS
    for name, entry in WORKFLOW_PRESETS.items():
        assert entry["description"]
        WorkflowConfig.from_preset(name)  # validates
    assert WorkflowConfig.from_preset("robust").n_starts == 5
    assert WorkflowConfig.from_preset("robust").enable_multistart
    assert WorkflowConfig.from_preset("global").n_starts == 20
    q = WorkflowConfig.from_preset("quality")
    assert q.goal is OptimizationGoal.QUALITY and q.validation_passes > 0
    h = WorkflowConfig.from_preset("HPC")
    assert h.cluster == {"type": "pbs"} and h.enable_checkpoints
    s = WorkflowConfig.from_preset("streaming")
    assert s.tier is WorkflowTier.STREAMING and s.tournament and s.enable_multistart
    assert WorkflowConfig.from_preset("fast").goal is OptimizationGoal.FAST
    assert WorkflowConfig.from_preset("memory_efficient").goal is OptimizationGoal.MEMORY_EFFICIENT


def test_preset_entries_not_shared():
    c = WorkflowConfig.from_preset("hpc")
    c.cluster["nodes"] = 3
    assert WORKFLOW_PRESETS["hpc"]["cluster"] == {"type": "pbs"}


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"preset='turbo' is not a known preset.*'fast'.*'hpc'"):
        WorkflowConfig.from_preset("turbo")


def test_adaptive_tolerances_keep_explicit():
    c = WorkflowConfig(ftol=1e-3).with_adaptive_tolerances(50_000)
    assert (c.ftol, c.xtol, c.gtol) == (1e-3, 1e-8, 1e-8)
    assert WorkflowConfig(goal="quality").resolved_tolerances(50_000) == (1e-10,) * 3
    assert WorkflowConfig(goal="fast").resolved_tolerances(50_000) == (1e-7,) * 3
    assert WorkflowConfig().resolved_tolerances(500) == (1e-12,) * 3


def test_goal_defaults():
    assert WorkflowConfig(goal="robust").with_goal_defaults().n_starts == 5
    g = WorkflowConfig(goal="global").with_goal_defaults()
    assert g.enable_multistart and g.n_starts == 20
    assert WorkflowConfig(goal="quality").with_goal_defaults().validation_passes == 3
    kept = WorkflowConfig(goal="robust", n_starts=7).with_goal_defaults()
    assert not kept.enable_multistart and kept.n_starts == 7
    assert WorkflowConfig().with_goal_defaults() == WorkflowConfig()


def test_differences():
    assert WorkflowConfig().differences() == {}
    assert WorkflowConfig(n_starts=3, loss="huber").differences() == {"n_starts": 3,
                                                                       "loss": "huber"}


tol = st.one_of(st.none(), st.floats(1e-15, 1.0))
configs = st.builds(
    WorkflowConfig,
    tier=st.one_of(st.none(), st.sampled_from(list(WorkflowTier))),
    goal=st.one_of(st.none(), st.sampled_from([g.value for g in OptimizationGoal])),
    ftol=tol, xtol=tol, gtol=tol,
    enable_multistart=st.booleans(),
    n_starts=st.integers(1, 100),
    sampler=st.sampled_from(["lhs", "sobol", "halton"]),
    scale_factor=st.floats(1e-3, 1e3),
    memory_limit_gb=st.one_of(st.none(), st.floats(0.1, 4096)),
    chunk_size=st.one_of(st.none(), st.integers(1, 10**9)),
    enable_checkpoints=st.booleans(),
    checkpoint_dir=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    split_every=st.integers(2, 64),
    reduction=st.sampled_from(["normal", "qr"]),
    loss=st.sampled_from(["linear", "soft_l1", "huber", "cauchy", "arctan"]),
    validation_passes=st.integers(0, 5),
    tournament=st.booleans(),
    cluster=st.one_of(st.none(), st.fixed_dictionaries(
        {"type": st.sampled_from(["pbs", "slurm", "local"]), "nodes": st.integers(1, 64)})),
)


@given(configs)
def test_to_dict_from_dict_round_trip(cfg):
    d = cfg.to_dict()
    assert WorkflowConfig.from_dict(d) == cfg
    # JSON-safe: survives a JSON round trip unchanged
    assert WorkflowConfig.from_dict(json.loads(json.dumps(d))) == cfg


@given(configs)
def test_differences_rebuild(cfg):
    assert WorkflowConfig(**cfg.differences()) == cfg
