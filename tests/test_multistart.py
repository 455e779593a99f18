"""Multi-start (issue #7): samplers, ROBUST/GLOBAL starts, tournament, QUALITY validation.

The test problems are chosen so that ONE start from a poor ``p0`` genuinely lands
in a worse local minimum (checked with scipy and with nlsq_dask first), while the
multi-start goals reach the global optimum (the best of scipy ``curve_fit`` runs
over a dense grid of starts).

The JAX kernels are compiled once per (model, number of starts), so the tests
share three models and a few start counts; dask runs use the synchronous
scheduler (no thread-pool overhead on tiny partitions).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("jax")
scipy_optimize = pytest.importorskip("scipy.optimize")

import jax.numpy as jnp  # noqa: E402

import nlsq_dask  # noqa: E402
from nlsq_dask.engines.multistart import QualityWarning  # noqa: E402
from nlsq_dask.solver.samplers import SAMPLERS, draw_starts  # noqa: E402
from nlsq_dask.workflow import WorkflowConfig  # noqa: E402
from nlsq_dask.workflow.enums import adaptive_tolerance  # noqa: E402

curve_fit = scipy_optimize.curve_fit


@pytest.fixture(autouse=True)
def _synchronous_dask():
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nlsq_dask.fit(*args, **kwargs)


def _scipy_cost(f, x, y, p):
    return 0.5 * float(np.sum((f(x, *p) - y) ** 2))


def _scipy_fit(f, x, y, p0, lb, ub):
    """scipy's trf from p0: ``(popt, cost)``; a failed run costs inf."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            p, _ = curve_fit(f, x, y, p0=p0, bounds=(lb, ub), method="trf", maxfev=20000)
        except (RuntimeError, ValueError):
            return None, np.inf
    return p, _scipy_cost(f, x, y, p)


def _scipy_grid_best(f, x, y, starts, lb, ub):
    """Best of scipy fits from a dense grid of starts: ``(popt, cost)``."""
    fits = [_scipy_fit(f, x, y, s, lb, ub) for s in starts]
    return min(fits, key=lambda pc: pc[1])


# ============================================================== problems
# 1. damped sine with ~33 oscillations; the frequency guess is far off
def sine_j(t, a, tau, f, phi):
    return a * jnp.exp(-t / tau) * jnp.sin(2 * jnp.pi * f * t + phi)


def sine_n(t, a, tau, f, phi):
    return a * np.exp(-t / tau) * np.sin(2 * np.pi * f * t + phi)


SINE_TRUE = (2.0, 4.0, 3.3, 0.5)
SINE_LB = [0.0, 2.0, 0.5, -np.pi]
SINE_UB = [10.0, 50.0, 6.0, np.pi]
SINE_P0 = [1.0, 5.0, 1.0, 0.0]


def sine_data(seed=0, n=2000):
    t = np.linspace(0.0, 10.0, n)
    y = sine_n(t, *SINE_TRUE) + 0.1 * np.random.default_rng(seed).normal(size=n)
    return t, y


# 2. two overlapping Gaussians; p0 puts the second one narrow, at the edge
def gauss_j(x, a1, m1, s1, a2, m2, s2):
    return a1 * jnp.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * jnp.exp(-0.5 * ((x - m2) / s2) ** 2)


def gauss_n(x, a1, m1, s1, a2, m2, s2):
    return a1 * np.exp(-0.5 * ((x - m1) / s1) ** 2) + a2 * np.exp(-0.5 * ((x - m2) / s2) ** 2)


GAUSS_TRUE = (1.0, 4.0, 0.8, 0.7, 5.8, 1.0)
GAUSS_LB = [0.0, 0.0, 0.1, 0.0, 0.0, 0.1]
GAUSS_UB = [5.0, 10.0, 5.0, 5.0, 10.0, 5.0]
GAUSS_P0 = [1.0, 5.0, 1.5, 1.0, 9.0, 0.3]


# 3. sum of two exponentials plus an offset; p0 with two fast, close rates
def exps_j(t, a1, k1, a2, k2, c):
    return a1 * jnp.exp(-k1 * t) + a2 * jnp.exp(-k2 * t) + c


def exps_n(t, a1, k1, a2, k2, c):
    return a1 * np.exp(-k1 * t) + a2 * np.exp(-k2 * t) + c


EXPS_TRUE = (1.0, 0.5, 2.0, 5.0, 0.5)
EXPS_LB = [-10.0, 0.01, -10.0, 0.01, -5.0]
EXPS_UB = [10.0, 20.0, 10.0, 20.0, 5.0]
EXPS_P0 = [1.0, 12.0, 1.0, 14.0, 1.0]


def _components_close(p, q, pairs, rtol):
    """Equal up to swapping the two components (indices ``pairs``) of a mixture."""
    p, q = np.asarray(p), np.asarray(q)
    swapped = q.copy()
    swapped[pairs[0] + pairs[1]] = q[pairs[1] + pairs[0]]
    return np.allclose(p, q, rtol=rtol, atol=0) or np.allclose(p, swapped, rtol=rtol, atol=0)


def _check_report(result, p0, n_starts, lb, ub):
    """The result records every start and which one won."""
    ms = result.extras["multistart"]
    assert len(ms["starts"]) == n_starts == result.config.n_starts
    assert result.config.enable_multistart
    for i, s in enumerate(ms["starts"]):
        assert s["index"] == i
        assert {"initial", "final", "status"} <= set(s) and ("cost" in s or "subset_cost" in s)
        init = np.asarray(s["initial"])
        assert np.all(init >= lb) and np.all(init <= ub)
    np.testing.assert_allclose(ms["starts"][0]["initial"], p0)  # center_on_p0: p0 first
    assert len({tuple(s["initial"]) for s in ms["starts"]}) == n_starts
    # tournament / screened starts carry the cost on their subset; the winner also its
    # full-data cost after the finish
    costs = np.array([s.get("subset_cost", s.get("cost")) for s in ms["starts"]])
    w = ms["winner"]
    assert 0 <= w < n_starts
    if ms["method"] == "tournament":
        # costs are on the subset of the last round each start played: compare the
        # winner with the other finalists only
        final = [i for i, s in enumerate(ms["starts"])
                 if s["subset_partitions"] == ms["starts"][w]["subset_partitions"]]
        assert costs[w] == pytest.approx(np.nanmin(costs[final]), rel=1e-9)
        assert ms["starts"][w]["cost"] == pytest.approx(result.cost, rel=1e-12)
    else:
        assert costs[w] == pytest.approx(np.nanmin(costs), rel=1e-9)
        assert result.cost <= costs[w] * (1 + 1e-9)
    assert ms["data_passes"] > 0
    return ms


# ============================================================== samplers
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_draw_starts_finite_bounds_in_box_and_distinct(sampler):
    lb, ub = np.array([-1.0, 0.0, 10.0]), np.array([1.0, 5.0, 1000.0])
    p0 = np.array([0.5, 1.0, 20.0])
    s = draw_starts(p0, lb, ub, 20, sampler=sampler, center_on_p0=False, seed=3)
    assert s.shape == (20, 3)
    assert np.all(s > lb) and np.all(s < ub)  # strictly inside (trust region needs it)
    assert len({tuple(r) for r in s}) == 20
    # low-discrepancy: every coordinate covers most of its interval
    cover = (s.max(axis=0) - s.min(axis=0)) / (ub - lb)
    assert np.all(cover > 0.8)
    # balanced: each tenth of every interval holds ~ 2 of the 20 points
    for j in range(3):
        counts = np.histogram(s[:, j], bins=10, range=(lb[j], ub[j]))[0]
        assert counts.max() <= 5, (sampler, j, counts)
    assert not np.any(np.all(np.isclose(s, p0), axis=1))  # p0 not forced in


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_draw_starts_unbounded_around_p0_with_scale_factor(sampler):
    p0 = np.array([3.0, -0.2, 100.0])
    inf = np.full(3, np.inf)
    for scale in (1.0, 0.1):
        s = draw_starts(p0, -inf, inf, 16, sampler=sampler, scale_factor=scale, seed=1)
        half = scale * np.maximum(np.abs(p0), 1.0)
        assert np.all(np.isfinite(s))
        assert np.all(np.abs(s - p0) <= half * (1 + 1e-12))
        assert len({tuple(r) for r in s}) == 16
        # they use the box, not a point: spread comparable to its width
        assert np.all(s.max(axis=0) - s.min(axis=0) > 0.8 * 2 * half)
        np.testing.assert_array_equal(s[0], p0)  # center_on_p0 defaults to True


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_draw_starts_center_on_p0(sampler):
    lb, ub = np.array([0.0, -10.0]), np.array([10.0, 10.0])
    p0 = np.array([9.0, -9.0])
    s = draw_starts(p0, lb, ub, 8, sampler=sampler, center_on_p0=True, scale_factor=0.2)
    np.testing.assert_array_equal(s[0], p0)
    # box of half width scale_factor*(ub-lb)/2 around p0, clipped to the bounds
    half = 0.2 * (ub - lb) / 2
    assert np.all(s >= np.maximum(p0 - half, lb)) and np.all(s <= np.minimum(p0 + half, ub))
    assert np.all(s > lb) and np.all(s < ub)
    assert len({tuple(r) for r in s}) == 8
    # mixed: one finite, one unbounded parameter
    s = draw_starts([2.0, 50.0], [0.0, -np.inf], [4.0, np.inf], 8, sampler=sampler)
    assert np.all((s[:, 0] > 0) & (s[:, 0] < 4)) and np.all(np.abs(s[:, 1] - 50) <= 50)


def test_draw_starts_seed_and_unknown_sampler():
    lb, ub = np.zeros(2), np.ones(2)
    a = draw_starts([0.5, 0.5], lb, ub, 7, seed=0)
    np.testing.assert_array_equal(a, draw_starts([0.5, 0.5], lb, ub, 7, seed=0))
    assert not np.allclose(a[1:], draw_starts([0.5, 0.5], lb, ub, 7, seed=1)[1:])
    assert draw_starts([0.5, 0.5], lb, ub, 5, sampler="sobol").shape == (5, 2)  # not a power of 2
    with pytest.raises(ValueError, match="sampler"):
        draw_starts([0.5, 0.5], lb, ub, 4, sampler="grid")


def test_goal_and_preset_multistart_fields():
    assert WorkflowConfig(goal="robust").with_goal_defaults().n_starts == 5
    assert WorkflowConfig(goal="global").with_goal_defaults().n_starts == 20
    assert WorkflowConfig(goal="global").with_goal_defaults().enable_multistart
    assert not WorkflowConfig(goal="fast").with_goal_defaults().enable_multistart
    # an explicit n_starts wins over the goal's default
    assert WorkflowConfig(goal="global", n_starts=7, enable_multistart=True
                          ).with_goal_defaults().n_starts == 7
    assert WorkflowConfig(goal="quality").with_goal_defaults().validation_passes == 3
    rob, glo = WorkflowConfig.from_preset("robust"), WorkflowConfig.from_preset("global")
    assert (rob.enable_multistart, rob.n_starts) == (True, 5)
    assert (glo.enable_multistart, glo.n_starts) == (True, 20)
    st = WorkflowConfig.from_preset("streaming")
    assert st.tournament and st.enable_multistart and st.n_starts == 10
    assert WorkflowConfig.from_preset("quality").validation_passes == 3


# ============================================================== ROBUST / GLOBAL
@pytest.fixture(scope="module")
def sine():
    t, y = sine_data(0)
    # reference: best scipy fit over a dense grid of frequency guesses
    grid = [[1.0, 5.0, f0, 0.0] for f0 in np.linspace(0.55, 5.95, 28)]
    ref, ref_cost = _scipy_grid_best(sine_n, t, y, grid, SINE_LB, SINE_UB)
    return t, y, ref, ref_cost


def test_damped_sine_single_start_fails(sine):
    t, y, ref, ref_cost = sine
    p, c = _scipy_fit(sine_n, t, y, SINE_P0, SINE_LB, SINE_UB)
    assert c > 10 * ref_cost and abs(p[2] - SINE_TRUE[2]) > 1  # scipy: a wrong frequency
    r = _quiet_fit(sine_j, t, y, p0=SINE_P0, bounds=(SINE_LB, SINE_UB))
    assert "multistart" not in r.extras
    assert r.success  # converged ... to a local minimum
    assert r.cost > 10 * ref_cost and abs(r.popt[2] - SINE_TRUE[2]) > 1


@pytest.mark.parametrize("how", [dict(preset="robust"), dict(preset="global"), dict(goal="global"),
                                 dict(config=WorkflowConfig(enable_multistart=True, n_starts=5,
                                                            sampler="halton"))])
def test_damped_sine_multistart_finds_global_optimum(sine, how):
    t, y, ref, ref_cost = sine
    r = _quiet_fit(sine_j, t, y, p0=SINE_P0, bounds=(SINE_LB, SINE_UB), **how)
    n = 5 if how.get("preset") == "robust" or "config" in how else 20
    ms = _check_report(r, SINE_P0, n, SINE_LB, SINE_UB)
    assert r.success
    assert r.cost == pytest.approx(ref_cost, rel=1e-6)
    np.testing.assert_allclose(r.popt, ref, rtol=1e-4)
    # the p0 start (index 0) is the one that fails; another start won
    assert ms["starts"][0]["cost"] > 10 * ref_cost and ms["winner"] != 0
    np.testing.assert_allclose(ms["starts"][ms["winner"]]["final"], r.popt, rtol=1e-6)


def test_gaussians_single_fails_robust_succeeds():
    rng = np.random.default_rng(3)
    x = np.linspace(0.0, 10.0, 1000)
    y = gauss_n(x, *GAUSS_TRUE) + 0.02 * rng.normal(size=x.size)
    grid = [[1.0, m1, 1.0, 1.0, m2, 1.0] for m1 in np.linspace(1, 9, 5) for m2 in np.linspace(1, 9, 5)]
    ref, ref_cost = _scipy_grid_best(gauss_n, x, y, grid, GAUSS_LB, GAUSS_UB)
    _, c = _scipy_fit(gauss_n, x, y, GAUSS_P0, GAUSS_LB, GAUSS_UB)
    assert c > 5 * ref_cost  # one broad Gaussian, the other switched off
    r = _quiet_fit(gauss_j, x, y, p0=GAUSS_P0, bounds=(GAUSS_LB, GAUSS_UB), preset="robust")
    ms = _check_report(r, GAUSS_P0, 5, GAUSS_LB, GAUSS_UB)
    # start 0 is p0 and (in memory, not screened) ran exactly as a single start would:
    # nlsq_dask's single start fails too
    assert ms["method"] == "vmapped" and ms["starts"][0]["status"] > 0
    assert ms["starts"][0]["cost"] > 5 * ref_cost
    assert r.cost == pytest.approx(ref_cost, rel=1e-6)
    assert _components_close(r.popt, ref, ([0, 1, 2], [3, 4, 5]), rtol=1e-4)
    # the winner's own history: from its start to the optimum, the cost never rising
    hist = r.history
    np.testing.assert_array_equal(hist[0]["params"], ms["starts"][ms["winner"]]["initial"])
    np.testing.assert_array_equal(hist[-1]["params"], r.popt)
    assert hist[-1]["cost"] == r.cost and len(hist) == r.nit + 1
    assert np.all(np.diff([h["cost"] for h in hist]) <= 0)


@pytest.fixture(scope="module")
def exps():
    t = np.linspace(0.0, 5.0, 500)
    y = exps_n(t, *EXPS_TRUE) + 0.01 * np.random.default_rng(1).normal(size=t.size)
    grid = [[1.0, k1, 1.0, k2, 0.0] for k1 in np.geomspace(0.05, 15, 6) for k2 in np.geomspace(0.05, 15, 6)
            if k1 < k2]
    ref, ref_cost = _scipy_grid_best(exps_n, t, y, grid, EXPS_LB, EXPS_UB)
    return t, y, ref, ref_cost


def test_sum_of_exponentials_single_fails_robust_succeeds(exps):
    t, y, ref, ref_cost = exps
    _, c = _scipy_fit(exps_n, t, y, EXPS_P0, EXPS_LB, EXPS_UB)
    assert c > 10 * ref_cost  # both rates collapse onto one (k1 == k2)
    single = _quiet_fit(exps_j, t, y, p0=EXPS_P0, bounds=(EXPS_LB, EXPS_UB))
    assert single.cost > 10 * ref_cost
    assert single.popt[1] == pytest.approx(single.popt[3], rel=1e-3)
    r = _quiet_fit(exps_j, t, y, p0=EXPS_P0, bounds=(EXPS_LB, EXPS_UB), preset="robust")
    _check_report(r, EXPS_P0, 5, EXPS_LB, EXPS_UB)
    assert r.cost == pytest.approx(ref_cost, rel=1e-6)
    assert _components_close(r.popt, ref, ([0, 1], [2, 3]), rtol=1e-4)


def test_robust_on_chunked_tier_finds_global_optimum(sine):
    """CHUNKED: all starts share each read (vmapped passes); the winner must be finished."""
    t, y, ref, ref_cost = sine
    r = _quiet_fit(sine_j, t, y, p0=SINE_P0, bounds=(SINE_LB, SINE_UB), preset="robust",
                   tier="chunked", chunk_size=125)
    assert r.tier.value == "chunked"
    ms = _check_report(r, SINE_P0, 5, SINE_LB, SINE_UB)
    assert ms["method"] == "vmapped passes"
    assert r.cost == pytest.approx(ref_cost, rel=1e-6), (
        f"winner {ms['winner']} stopped at cost {r.cost:.6g} (status {r.status}, {r.nfev} passes); "
        f"global optimum {ref_cost:.6g}; starts: "
        + ", ".join(f"{s['cost']:.4g}/status {s['status']}/{s['nfev']} passes" for s in ms["starts"]))
    assert r.success


# ============================================================== tournament
def test_streaming_preset_runs_a_tournament(sine):
    t, y, ref, ref_cost = sine
    r = _quiet_fit(sine_j, t, y, p0=SINE_P0, bounds=(SINE_LB, SINE_UB), preset="streaming",
                   chunk_size=125)
    assert r.tier.value == "streaming"
    ms = _check_report(r, SINE_P0, 10, SINE_LB, SINE_UB)
    assert ms["method"] == "tournament"
    assert r.cost == pytest.approx(ref_cost, rel=1e-6)
    rounds = ms["rounds"]
    assert rounds[0]["starts"] == 10 and rounds[-1]["survivors"] == 1
    n_parts = 16
    for a, b in zip(rounds, rounds[1:]):
        assert b["starts"] == a["survivors"] == -(-a["starts"] // 2)  # the worse half drops
        assert b["partitions"] >= a["partitions"]                     # growing subsets
    assert rounds[-1]["partitions"] <= n_parts
    assert rounds[0]["partitions"] < n_parts
    # every start but the winner was eliminated in some round; the winner never
    w = ms["winner"]
    assert ms["starts"][w]["eliminated_in_round"] is None
    assert all(s["eliminated_in_round"] is not None for i, s in enumerate(ms["starts"]) if i != w)
    # passes: subset rounds (in full-pass equivalents) + the full-data finish
    subset = sum(rd["passes"] * rd["partitions"] / n_parts for rd in rounds)
    assert ms["data_passes"] == pytest.approx(subset + r.nfev)
    # tournament=True on the CHUNKED tier does the same
    r2 = _quiet_fit(sine_j, t, y, p0=SINE_P0, bounds=(SINE_LB, SINE_UB), preset="streaming",
                    tier="chunked", chunk_size=125)
    assert r2.extras["multistart"]["method"] == "tournament"
    np.testing.assert_allclose(r2.popt, r.popt, rtol=1e-9)


def test_tournament_matches_full_multistart_with_fewer_passes():
    """20 noise seeds: tournament vs all starts on all data (CHUNKED, tournament=False)."""
    same, ratios, lines = 0, [], []
    full_cfg = WorkflowConfig(enable_multistart=True, n_starts=10)
    for seed in range(20):
        t, y = sine_data(seed)
        kw = dict(p0=SINE_P0, bounds=(SINE_LB, SINE_UB), chunk_size=125)
        rt = _quiet_fit(sine_j, t, y, preset="streaming", **kw)
        rf = _quiet_fit(sine_j, t, y, config=full_cfg, tier="chunked", **kw)
        assert rf.extras["multistart"]["method"] == "vmapped passes"
        ok = np.allclose(rt.popt, rf.popt, rtol=1e-6, atol=0)
        same += ok
        pt, pf = rt.extras["multistart"]["data_passes"], rf.extras["multistart"]["data_passes"]
        ratios.append(pt / pf)
        lines.append(f"seed {seed}: same={ok} cost {rt.cost:.6g}/{rf.cost:.6g} "
                     f"passes {pt:.2f}/{pf:.0f}")
    report = "\n".join(lines)
    assert same >= 18, report
    assert np.median(ratios) <= 0.40, (
        f"tournament used a median {np.median(ratios):.0%} (max {max(ratios):.0%}) of the full "
        f"multi-start's data passes; target <= 40%\n{report}")


# ============================================================== QUALITY
def test_quality_validation_agrees_on_well_posed_problem(exps):
    t, y, ref, ref_cost = exps
    with warnings.catch_warnings():
        warnings.simplefilter("error", QualityWarning)
        r = nlsq_dask.fit(exps_j, t, y, p0=[1.0, 1.0, 1.0, 3.0, 0.0], bounds=(EXPS_LB, EXPS_UB),
                          preset="quality")
    n = t.size
    assert r.config.ftol == adaptive_tolerance(n, "quality") <= adaptive_tolerance(n, None)
    assert r.config.validation_passes == 3
    v = r.extras["validation"]
    assert v["agree"] is True
    assert len(v["params"]) == 3 and len(v["spread"]) == 5
    assert np.all(np.asarray(v["spread"]) < 1e-3 * r.perr)
    assert np.all(np.asarray(v["max_deviation_in_perr"]) < 1e-3)
    assert _components_close(r.popt, ref, ([0, 1], [2, 3]), rtol=1e-5)


def test_quality_validation_warns_on_ill_posed_problem():
    # two nearly equal rates (1.0 and 1.2) and an offset: the data cannot separate them
    t = np.linspace(0.0, 5.0, 500)
    y = (np.exp(-1.0 * t) + np.exp(-1.2 * t) + 0.2
         + 0.03 * np.random.default_rng(3).normal(size=t.size))
    with pytest.warns(QualityWarning, match="standard error"):
        r = nlsq_dask.fit(exps_j, t, y, p0=[1.0, 0.8, 1.0, 1.5, 0.0], bounds=(EXPS_LB, EXPS_UB),
                          goal="quality")
    assert r.config.validation_passes == 3
    v = r.extras["validation"]
    assert v["agree"] is False
    assert max(v["max_deviation_in_perr"]) > 1
    assert len(v["params"]) == 3 and len(v["spread"]) == 5
    assert max(v["spread"]) > 0.1
