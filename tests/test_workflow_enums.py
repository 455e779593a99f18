"""Enums, enum parsing and the adaptive tolerance table."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlsq_dask.workflow import (
    DatasetSizeTier,
    MemoryTier,
    OptimizationGoal,
    WorkflowTier,
    adaptive_tolerance,
    parse_enum,
)

ORDER = list(DatasetSizeTier)


def test_members_and_values():
    assert [t.value for t in WorkflowTier] == [
        "standard", "chunked", "streaming", "streaming_checkpoint"]
    assert [g.value for g in OptimizationGoal] == [
        "fast", "robust", "global", "memory_efficient", "quality"]
    assert WorkflowTier("chunked") is WorkflowTier.CHUNKED
    assert str(WorkflowTier.CHUNKED) == "chunked"
    assert f"{OptimizationGoal.QUALITY}" == "quality"
    assert json.dumps({"t": WorkflowTier.STREAMING}) == '{"t": "streaming"}'


@pytest.mark.parametrize("text", ["chunked", "CHUNKED", " Chunked ", WorkflowTier.CHUNKED])
def test_parse_enum_case_insensitive(text):
    assert parse_enum(WorkflowTier, text, "tier") is WorkflowTier.CHUNKED


def test_parse_enum_errors():
    with pytest.raises(ValueError, match=r"tier='chunky'.*'standard', 'chunked'"):
        parse_enum(WorkflowTier, "chunky", "tier")
    with pytest.raises(TypeError, match=r"goal must be a OptimizationGoal.*got int 3"):
        parse_enum(OptimizationGoal, 3, "goal")


@pytest.mark.parametrize(
    "n, tier, tol",
    [
        (0, "tiny", 1e-12), (999, "tiny", 1e-12),
        (1_000, "small", 1e-10), (9_999, "small", 1e-10),
        (10_000, "medium", 1e-8), (99_999, "medium", 1e-8),
        (100_000, "large", 1e-7), (999_999, "large", 1e-7),
        (1_000_000, "very_large", 1e-6), (9_999_999, "very_large", 1e-6),
        (10_000_000, "massive", 1e-5), (10**12, "massive", 1e-5),
    ],
)
def test_size_table_edges(n, tier, tol):
    t = DatasetSizeTier.from_n_points(n)
    assert t.value == tier
    assert t.tolerance == tol
    assert adaptive_tolerance(n) == tol


def test_goal_shifts_one_tier_with_clamping():
    assert adaptive_tolerance(5_000, "quality") == 1e-12
    assert adaptive_tolerance(5_000, OptimizationGoal.FAST) == 1e-8
    assert adaptive_tolerance(10, "quality") == 1e-12  # clamped at TINY
    assert adaptive_tolerance(10**9, "fast") == 1e-5  # clamped at MASSIVE
    assert adaptive_tolerance(10**9, "robust") == 1e-5


def test_size_tier_bad_input():
    with pytest.raises(ValueError, match="n_points must be >= 0; got -1"):
        DatasetSizeTier.from_n_points(-1)
    with pytest.raises(TypeError, match="n_points must be an integer; got float"):
        DatasetSizeTier.from_n_points(1.5)
    with pytest.raises(ValueError, match="goal='slow' is not a valid OptimizationGoal"):
        adaptive_tolerance(10, "slow")


@pytest.mark.parametrize(
    "gb, tier",
    [(0, "low"), (15.99, "low"), (16, "medium"), (63.9, "medium"), (64, "high"),
     (127.9, "high"), (128, "very_high"), (4096, "very_high")],
)
def test_memory_tier(gb, tier):
    assert MemoryTier.from_memory_gb(gb).value == tier


def test_memory_tier_bad_input():
    with pytest.raises(ValueError, match="gb must be a non-negative number"):
        MemoryTier.from_memory_gb(-1)
    with pytest.raises(TypeError, match="gb must be a number; got str"):
        MemoryTier.from_memory_gb("16")


@given(st.integers(0, 10**13), st.integers(0, 10**13))
def test_tolerance_monotone_in_size(a, b):
    lo, hi = sorted((a, b))
    assert adaptive_tolerance(lo) <= adaptive_tolerance(hi)
    assert ORDER.index(DatasetSizeTier.from_n_points(lo)) <= ORDER.index(
        DatasetSizeTier.from_n_points(hi))


@given(st.integers(0, 10**13))
def test_goal_ordering(n):
    q, base, f = (adaptive_tolerance(n, g) for g in ("quality", None, "fast"))
    assert q <= base <= f
    assert 1e-12 <= q and f <= 1e-5
