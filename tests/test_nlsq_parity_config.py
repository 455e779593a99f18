"""NLSQ v0.5.3's workflow configuration API, where the spec page is silent.

Code written against ``nlsq.workflow`` (NLSQ v0.5.3, tag ``v0.5.3``, commit 50d672e)
runs against ``nlsq_dask.workflow``: one test per upstream behaviour, asserting NLSQ's
documented values except where the spec page (its tolerance table, its seven presets)
or this package's memory-model selection decide otherwise; those places say so.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import nlsq_dask
from nlsq_dask.workflow import (
    DEPRECATED_PRESET_ALIASES,
    NLSQ_PRESETS,
    WORKFLOW_PRESETS,
    DatasetProfile,
    DatasetSizeTier,
    MemoryTier,
    OptimizationGoal,
    ResourceSnapshot,
    Selection,
    WorkflowConfig,
    WorkflowSelector,
    WorkflowTier,
    adaptive_tolerance,
    auto_select_workflow,
    calculate_adaptive_tolerances,
)

#: the keys NLSQ v0.5.3's WorkflowConfig.to_dict writes
NLSQ_CONFIG_KEYS = {"tier", "goal", "gtol", "ftol", "xtol", "enable_multistart", "n_starts",
                    "sampler", "center_on_p0", "scale_factor", "memory_limit_gb",
                    "chunk_size", "enable_checkpoints", "checkpoint_dir", "_preset"}
#: NLSQ v0.5.3's preset names beside the spec's seven
NLSQ_NAMES = ("standard", "large_robust", "hpc_distributed", "precision_high",
              "precision_standard", "streaming_large", "global_multimodal", "multimodal",
              "spectroscopy", "timeseries")
NLSQ_ALIASES = {"xpcs": "precision_standard", "saxs": "precision_standard",
                "kinetics": "precision_standard", "dose_response": "precision_high",
                "imaging": "streaming_large", "materials": "precision_standard",
                "binding": "precision_standard", "synchrotron": "streaming_large"}


@pytest.fixture
def machine(monkeypatch):
    """NLSQ's form of select() detects resources: pin them to a 64 GiB, 8-thread host."""
    def detect(cls, client=None, memory_limit_gb=None):
        host = 64.0 if memory_limit_gb is None else min(64.0, memory_limit_gb)
        return ResourceSnapshot(host_memory_gb=host, n_threads=8)

    monkeypatch.setattr(ResourceSnapshot, "detect", classmethod(detect))


# ----------------------------------------------------------------------------- enums
def test_goal_normalize_reads_global_as_robust():
    assert OptimizationGoal.normalize(OptimizationGoal.GLOBAL) is OptimizationGoal.ROBUST
    assert OptimizationGoal.normalize(OptimizationGoal.ROBUST) is OptimizationGoal.ROBUST
    for goal in (OptimizationGoal.FAST, OptimizationGoal.QUALITY,
                 OptimizationGoal.MEMORY_EFFICIENT):
        assert OptimizationGoal.normalize(goal) is goal
    assert OptimizationGoal.normalize("GLOBAL") is OptimizationGoal.ROBUST
    assert OptimizationGoal.normalize(None) is None
    with pytest.raises(ValueError, match="goal='slow' is not a valid OptimizationGoal"):
        OptimizationGoal.normalize("slow")


def test_size_tier_max_points():
    expected = {"TINY": 1_000, "SMALL": 10_000, "MEDIUM": 100_000, "LARGE": 1_000_000,
                "VERY_LARGE": 10_000_000, "MASSIVE": math.inf}
    assert {t.name: t.max_points for t in DatasetSizeTier} == expected


def test_size_tier_edges_are_nlsq_edges_below_10m():
    for n, tier in [(999, "TINY"), (1_000, "SMALL"), (9_999, "SMALL"), (10_000, "MEDIUM"),
                    (99_999, "MEDIUM"), (999_999, "LARGE"), (9_999_999, "VERY_LARGE")]:
        assert DatasetSizeTier.from_n_points(n) is DatasetSizeTier[tier]


def test_size_tier_huge_is_the_spec_massive():
    # NLSQ's HUGE (10M-100M points) is a name of the spec's MASSIVE (> 10M points)
    assert DatasetSizeTier.HUGE is DatasetSizeTier.MASSIVE
    assert DatasetSizeTier.from_n_points(99_999_999) is DatasetSizeTier.HUGE
    assert DatasetSizeTier.from_n_points(100_000_000) is DatasetSizeTier.MASSIVE
    assert DatasetSizeTier["HUGE"] is DatasetSizeTier.MASSIVE
    assert len(list(DatasetSizeTier)) == 6


def test_memory_tier_max_memory_gb():
    assert [t.max_memory_gb for t in MemoryTier] == [16.0, 64.0, 128.0, math.inf]


def test_memory_tier_description():
    assert [t.description for t in MemoryTier] == [
        "Constrained memory (<16GB)", "Standard memory (16-64GB)",
        "High memory (64-128GB)", "Very high memory (>128GB)"]


@pytest.mark.parametrize("gb, tier", [(8.0, "LOW"), (15.9, "LOW"), (16.0, "MEDIUM"),
                                      (32.0, "MEDIUM"), (64.0, "HIGH"), (100.0, "HIGH"),
                                      (128.0, "VERY_HIGH"), (256.0, "VERY_HIGH")])
def test_memory_tier_from_available_memory_gb(gb, tier):
    assert MemoryTier.from_available_memory_gb(gb) is MemoryTier[tier]


def test_memory_tier_from_available_memory_gb_names_its_argument():
    with pytest.raises(ValueError, match="available_memory_gb must be a non-negative number"):
        MemoryTier.from_available_memory_gb(-1.0)


def test_calculate_adaptive_tolerances_returns_nlsq_dict():
    tols = calculate_adaptive_tolerances(500)
    assert list(tols) == ["gtol", "ftol", "xtol"]
    assert tols == {"gtol": 1e-12, "ftol": 1e-12, "xtol": 1e-12}
    # values follow the spec's table (NLSQ's code has 1e-8 and 1e-7 here)
    assert calculate_adaptive_tolerances(500_000)["gtol"] == 1e-7
    assert calculate_adaptive_tolerances(5_000_000)["gtol"] == 1e-6
    for n in (10, 5_000, 5_000_000, 10**9):
        for goal in (None, *OptimizationGoal):
            assert calculate_adaptive_tolerances(n, goal) == dict.fromkeys(
                ("gtol", "ftol", "xtol"), adaptive_tolerance(n, goal))


def test_calculate_adaptive_tolerances_goal_shifts():
    base = calculate_adaptive_tolerances(5_000_000)["gtol"]
    assert calculate_adaptive_tolerances(5_000_000, OptimizationGoal.QUALITY)["gtol"] < base
    assert calculate_adaptive_tolerances(5_000_000, OptimizationGoal.FAST)["gtol"] > base
    for goal in (OptimizationGoal.ROBUST, OptimizationGoal.GLOBAL):
        assert calculate_adaptive_tolerances(5_000_000, goal)["gtol"] == base
    # clamped at both ends, as NLSQ's
    assert calculate_adaptive_tolerances(500, OptimizationGoal.QUALITY)["gtol"] == 1e-12
    assert calculate_adaptive_tolerances(500_000_000, OptimizationGoal.FAST)["gtol"] == 1e-5


# ----------------------------------------------------------------------------- presets
def test_nlsq_preset_names_are_known():
    assert tuple(NLSQ_PRESETS) == NLSQ_NAMES
    assert set(WORKFLOW_PRESETS) == {"fast", "robust", "global", "memory_efficient",
                                     "quality", "hpc", "streaming"}
    for name, entry in NLSQ_PRESETS.items():
        assert entry["description"]
        assert entry["based_on"] is None or entry["based_on"] in WORKFLOW_PRESETS


@pytest.mark.parametrize("name", NLSQ_NAMES + tuple(WORKFLOW_PRESETS))
def test_from_preset_names_its_preset(name):
    config = WorkflowConfig.from_preset(name)
    assert isinstance(config, WorkflowConfig)
    assert config.preset == name
    assert WorkflowConfig.from_preset(name.upper()).preset == name


@pytest.mark.parametrize("name, base, fields", [
    ("standard", None, {"enable_multistart": False, "n_starts": 0}),
    ("large_robust", "robust", {"enable_multistart": True, "n_starts": 10}),
    ("hpc_distributed", "hpc", {"enable_checkpoints": True, "enable_multistart": True,
                                "n_starts": 10}),
    ("precision_high", "quality", {"goal": OptimizationGoal.QUALITY,
                                   "enable_multistart": True, "n_starts": 15}),
    ("precision_standard", "robust", {"goal": OptimizationGoal.ROBUST, "n_starts": 10}),
    ("streaming_large", "streaming", {"tier": WorkflowTier.STREAMING,
                                      "enable_checkpoints": True, "n_starts": 10}),
    ("global_multimodal", "global", {"goal": OptimizationGoal.GLOBAL,
                                     "enable_multistart": True, "n_starts": 30,
                                     "sampler": "sobol"}),
    ("multimodal", "global", {"goal": OptimizationGoal.GLOBAL, "n_starts": 30,
                              "sampler": "sobol"}),
    ("spectroscopy", "quality", {"goal": OptimizationGoal.QUALITY,
                                 "enable_multistart": True, "n_starts": 15}),
    ("timeseries", "streaming", {"tier": WorkflowTier.STREAMING, "enable_checkpoints": True,
                                 "enable_multistart": True, "n_starts": 10}),
])
def test_nlsq_presets_are_the_nearest_spec_preset_with_nlsq_settings(name, base, fields):
    config = WorkflowConfig.from_preset(name)
    for field, value in fields.items():
        assert getattr(config, field) == value, field
    # everything not named here comes from the nearest spec preset (or the defaults)
    start = WorkflowConfig() if base is None else WorkflowConfig.from_preset(base)
    assert set(config.differences(start)) <= set(fields)


@pytest.mark.parametrize("alias, target", sorted(NLSQ_ALIASES.items()))
def test_deprecated_aliases_warn_and_become_their_target(alias, target):
    assert DEPRECATED_PRESET_ALIASES == NLSQ_ALIASES
    assert alias not in WORKFLOW_PRESETS and alias not in NLSQ_PRESETS
    with pytest.warns(DeprecationWarning, match=f"Preset '{alias}' is deprecated, "
                                                f"use '{target}' instead") as record:
        config = WorkflowConfig.from_preset(alias)
    assert config.preset == target
    assert config == WorkflowConfig.from_preset(target)
    assert record[0].filename == __file__  # points at the caller, as NLSQ's stacklevel=2


def test_spec_presets_keep_their_own_meaning():
    # names both tables know are the spec's entries (NLSQ's pin tier and tolerances)
    for name in ("fast", "quality", "streaming", "memory_efficient"):
        assert name not in NLSQ_PRESETS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert WorkflowConfig.from_preset("quality").validation_passes == 3


def test_unknown_preset_lists_nlsq_names_too():
    with pytest.raises(ValueError, match=r"preset='turbo' is not a known preset.*'hpc'.*"
                                         r"NLSQ's names.*'standard'.*'xpcs'"):
        WorkflowConfig.from_preset("turbo")


def test_nlsq_preset_through_resolve_config():
    from nlsq_dask.workflow import resolve_config

    config = resolve_config(preset="global_multimodal", environ={})
    assert config.n_starts == 30 and config.sampler == "sobol" and config.enable_multistart


# ----------------------------------------------------------------------------- config
def test_to_dict_has_nlsq_keys():
    d = WorkflowConfig.from_preset("large_robust").to_dict()
    assert NLSQ_CONFIG_KEYS <= set(d)
    assert d["_preset"] == "large_robust"
    assert WorkflowConfig().to_dict()["_preset"] is None
    json.dumps(d)


def test_from_dict_reads_a_config_saved_by_nlsq():
    saved = {  # what NLSQ v0.5.3's WorkflowConfig.from_preset("standard").to_dict() writes
        "tier": "STANDARD", "goal": "ROBUST", "gtol": 1e-08, "ftol": 1e-08, "xtol": 1e-08,
        "enable_multistart": False, "n_starts": 0, "sampler": "lhs", "center_on_p0": True,
        "scale_factor": 1.0, "memory_limit_gb": None, "chunk_size": None,
        "enable_checkpoints": False, "checkpoint_dir": None, "_preset": "standard",
    }
    config = WorkflowConfig.from_dict(json.loads(json.dumps(saved)))
    assert config.tier is WorkflowTier.STANDARD and config.goal is OptimizationGoal.ROBUST
    assert (config.gtol, config.ftol, config.xtol) == (1e-8, 1e-8, 1e-8)
    assert config.n_starts == 0 and not config.enable_multistart
    assert config.preset == "standard"


def test_from_dict_takes_enum_names_and_members():
    config = WorkflowConfig.from_dict({"tier": "CHUNKED", "goal": "FAST", "n_starts": 20})
    assert config.tier is WorkflowTier.CHUNKED and config.goal is OptimizationGoal.FAST
    assert config.n_starts == 20
    config = WorkflowConfig.from_dict({"tier": WorkflowTier.CHUNKED,
                                       "goal": OptimizationGoal.QUALITY})
    assert config.tier is WorkflowTier.CHUNKED and config.goal is OptimizationGoal.QUALITY


def test_round_trip_keeps_every_nlsq_field_and_the_preset():
    original = WorkflowConfig(
        tier=WorkflowTier.STREAMING_CHECKPOINT, goal=OptimizationGoal.MEMORY_EFFICIENT,
        gtol=1e-6, ftol=1e-6, xtol=1e-6, enable_multistart=True, n_starts=15,
        sampler="sobol", center_on_p0=False, scale_factor=0.5, memory_limit_gb=32.0,
        chunk_size=50000, enable_checkpoints=True, checkpoint_dir="/tmp/ckpt",
        _preset="custom:mine")
    restored = WorkflowConfig.from_dict(original.to_dict())
    for key in NLSQ_CONFIG_KEYS:
        assert getattr(restored, key) == getattr(original, key), key
    assert restored.preset == "custom:mine"


def test_positional_fields_in_nlsq_order():
    config = WorkflowConfig(WorkflowTier.CHUNKED, OptimizationGoal.QUALITY, 1e-9, 1e-8, 1e-7,
                            True, 15, "sobol", False, 0.5, 32.0, 50_000, True, "/tmp/ckpt")
    assert (config.tier, config.goal) == (WorkflowTier.CHUNKED, OptimizationGoal.QUALITY)
    assert (config.gtol, config.ftol, config.xtol) == (1e-9, 1e-8, 1e-7)
    assert (config.enable_multistart, config.n_starts, config.sampler) == (True, 15, "sobol")
    assert (config.center_on_p0, config.scale_factor, config.memory_limit_gb) == (False, 0.5,
                                                                                  32.0)
    assert (config.chunk_size, config.enable_checkpoints, config.checkpoint_dir) == (
        50_000, True, "/tmp/ckpt")


def test_preset_property():
    assert WorkflowConfig().preset is None
    assert WorkflowConfig.from_preset("Standard").preset == "standard"
    with pytest.raises(TypeError, match="_preset .* must be a str or None; got int"):
        WorkflowConfig(_preset=3)


def test_with_overrides_clears_the_preset():
    original = WorkflowConfig.from_preset("standard")
    modified = original.with_overrides(enable_multistart=True, n_starts=20)
    assert original.preset == "standard" and modified.preset is None
    assert modified.n_starts == 20 and original.n_starts == 0
    assert original.with_overrides().preset == "standard"
    assert original.with_overrides(n_starts=3, _preset="mine").preset == "mine"


def test_with_adaptive_tolerances_clears_the_preset_and_shifts_by_goal():
    original = WorkflowConfig.from_preset("quality")
    adapted = original.with_adaptive_tolerances(5_000_000)
    assert adapted is not original and adapted.goal is original.goal
    assert adapted.preset is None
    # one tier tighter than VERY_LARGE in the spec's table (NLSQ's code: 1e-8)
    assert (adapted.gtol, adapted.ftol, adapted.xtol) == (1e-7, 1e-7, 1e-7)


def test_n_starts_zero_is_no_multistart():
    config = WorkflowConfig(n_starts=0, enable_multistart=True)
    assert config.n_starts == 0
    # a goal's default start count does not replace an explicit 0
    assert WorkflowConfig(goal="robust", n_starts=0).with_goal_defaults().n_starts == 0
    with pytest.raises(ValueError, match="n_starts must be an integer >= 0; got -1"):
        WorkflowConfig(n_starts=-1)


def test_n_starts_zero_fits_a_single_start():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    x = np.linspace(0.0, 4.0, 200)
    y = 2.0 * np.exp(-0.7 * x) + 0.1

    def decay(x, a, b, c):
        return a * jnp.exp(-b * x) + c

    result = nlsq_dask.fit(decay, x, y, p0=[1.0, 1.0, 0.0],
                           config=WorkflowConfig(enable_multistart=True, n_starts=0))
    np.testing.assert_allclose(result.popt, [2.0, 0.7, 0.1], rtol=1e-6)
    diag = result.multistart_diagnostics
    assert diag["bypassed"] is True and diag["n_starts_evaluated"] == 0


# ----------------------------------------------------------------------------- selector
def test_selector_takes_memory_limit_gb():
    assert WorkflowSelector(memory_limit_gb=8.0).memory_limit_gb == 8.0
    assert WorkflowSelector(8.0).memory_limit_gb == 8.0  # NLSQ's first positional
    assert WorkflowSelector().memory_limit_gb is None
    with pytest.raises(ValueError, match="memory_limit_gb must be a positive number"):
        WorkflowSelector(memory_limit_gb=0)


def test_select_in_nlsq_form_returns_a_config(machine):
    selector = WorkflowSelector(memory_limit_gb=8.0)
    config = selector.select(n_points=5_000, n_params=5)
    assert isinstance(config, WorkflowConfig)
    assert config.tier is WorkflowTier.STANDARD
    assert (config.gtol, config.ftol, config.xtol) == (1e-10,) * 3
    assert config.memory_limit_gb == 8.0
    assert selector.select(5_000, 5) == config  # positional, as NLSQ's


def test_select_in_nlsq_form_applies_the_goal(machine):
    selector = WorkflowSelector(memory_limit_gb=200.0)
    quality = selector.select(n_points=5_000, n_params=5, goal=OptimizationGoal.QUALITY)
    assert quality.goal is OptimizationGoal.QUALITY and quality.gtol == 1e-12
    assert quality.validation_passes == 3
    fast = selector.select(5_000, 5, OptimizationGoal.FAST)
    assert not fast.enable_multistart and fast.gtol == 1e-8
    robust = selector.select(5_000, 5, "robust")
    assert robust.enable_multistart and robust.n_starts == 5


def test_select_in_nlsq_form_streams_what_memory_cannot_hold(machine):
    config = WorkflowSelector(memory_limit_gb=8.0).select(n_points=5_000_000_000, n_params=5)
    assert config.tier is WorkflowTier.STREAMING
    lean = WorkflowSelector(memory_limit_gb=8.0).select(
        n_points=50_000_000, n_params=5, goal=OptimizationGoal.MEMORY_EFFICIENT)
    assert lean.tier is WorkflowTier.STREAMING


def test_select_forms_are_told_apart():
    selector = WorkflowSelector()
    with pytest.raises(TypeError, match="both by position and by name"):
        selector.select(5_000, 5, "fast", goal="fast")
    with pytest.raises(TypeError, match="needs n_points and n_params"):
        selector.select(n_points=5_000)
    with pytest.raises(TypeError, match="goal= goes with select"):
        selector.select(DatasetProfile(5_000, 5), ResourceSnapshot(host_memory_gb=8.0),
                        goal="fast")
    sel = selector.select(DatasetProfile(5_000, 5), ResourceSnapshot(host_memory_gb=8.0))
    assert isinstance(sel, Selection)


def test_selector_memory_limit_caps_the_profile_form_too():
    big = ResourceSnapshot(host_memory_gb=64.0, n_threads=8)
    profile = DatasetProfile(10**8, 10)
    assert WorkflowSelector().select(profile, big).tier is WorkflowTier.STANDARD
    sel = WorkflowSelector(memory_limit_gb=1.0).select(profile, big)
    assert sel.tier is not WorkflowTier.STANDARD and sel.config.memory_limit_gb == 1.0
    # a config's own lower cap stays
    sel = WorkflowSelector(memory_limit_gb=4.0).select(
        profile, big, WorkflowConfig(memory_limit_gb=2.0))
    assert sel.config.memory_limit_gb == 2.0


def test_auto_select_workflow_with_nlsq_arguments_reads_like_a_config(machine):
    sel = auto_select_workflow(n_points=5_000, n_params=5, goal=OptimizationGoal.QUALITY,
                               memory_limit_gb=200.0)
    assert sel is not None and sel.tier is WorkflowTier.STANDARD
    for field in WorkflowConfig.field_names():
        assert getattr(sel, field) == getattr(sel.config, field), field
    assert sel.gtol == 1e-12 and sel.preset is None
    with pytest.raises(AttributeError, match="'Selection' object has no attribute 'bogus'"):
        sel.bogus
    streamed = auto_select_workflow(n_points=50_000_000_000, n_params=5, memory_limit_gb=8.0)
    assert streamed.tier is WorkflowTier.STREAMING


def test_config_from_nlsq_select_fits(machine):
    pytest.importorskip("jax")
    import jax.numpy as jnp

    x = np.linspace(0.0, 4.0, 300)
    y = 1.5 * np.exp(-0.4 * x)

    def decay(x, a, b):
        return a * jnp.exp(-b * x)

    config = WorkflowSelector().select(n_points=x.size, n_params=2)
    popt, _ = nlsq_dask.fit(decay, x, y, p0=[1.0, 1.0], workflow=config)
    np.testing.assert_allclose(popt, [1.5, 0.4], rtol=1e-6)


# ----------------------------------------------------------------------------- exports
def test_nlsq_top_level_names():
    for name in ("WORKFLOW_PRESETS", "DatasetSizeTier", "MemoryTier", "OptimizationGoal",
                 "WorkflowConfig", "WorkflowSelector", "WorkflowTier",
                 "auto_select_workflow"):
        assert hasattr(nlsq_dask, name), name
    for name in ("calculate_adaptive_tolerances", "DEPRECATED_PRESET_ALIASES",
                 "NLSQ_PRESETS"):
        assert name in nlsq_dask.workflow.__all__, name
