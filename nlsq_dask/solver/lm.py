"""Levenberg–Marquardt / trust-region reflective iteration on pass statistics.

The method is scipy's ``trf`` with the exact trust-region solver (Branch, Coleman
& Li; Moré's LM parameter search) and MINPACK-style Jacobian scaling
(``x_scale='jac'``), rewritten so that the data enter only through the statistics
of a pass (:mod:`nlsq_dask.solver.stats`). One step consumes the statistics at the
pending trial point (:func:`lm_consume`: it accepts or rejects the point, updates the
radius and tests termination) and proposes the next trial (:func:`lm_propose`). The statistics of an
accepted trial are already those of the new iterate, so every trial costs exactly
one pass. Every tier runs it in the host loop of :mod:`nlsq_dask.engines.iterate`,
compiled once per parameter count whatever the model.

Where ``ftol``/``xtol`` would stop while the parameters still change in the digits the
tolerances promise, a few Gauss–Newton polishing trials follow (:func:`settled`); on
well-converged problems they cost no pass.

Status codes are scipy's: 0 ``max_nfev`` reached, 1 ``gtol``, 2 ``ftol``, 3 ``xtol``,
4 ``ftol`` and ``xtol``, -1 residuals not finite at the start, -2 stopped by the
callback (set by the loop, never by the step).
"""

from __future__ import annotations

import enum

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .stats import NormalStats
from .trust_region import (EPS, check_termination, cl_scaling, make_strictly_feasible,
                           select_step, solve_lsq_trust_region, update_tr_radius)

class Status(enum.IntEnum):
    """Why a fit stopped: ``scipy.optimize.least_squares``' status values (> 0: converged),
    each with its message (:attr:`message`)."""

    CALLBACK = -2
    NOT_FINITE = -1
    MAX_NFEV = 0
    GTOL = 1
    FTOL = 2
    XTOL = 3
    FTOL_XTOL = 4

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.CALLBACK: "The fit was stopped by the callback (it returned True or raised "
                     "StopIteration).",
    Status.NOT_FINITE: "The residuals are not finite at the initial point; check p0, the data "
                       "and the model.",
    Status.MAX_NFEV: "The maximum number of function evaluations (data passes) is exceeded.",
    Status.GTOL: "`gtol` termination condition is satisfied.",
    Status.FTOL: "`ftol` termination condition is satisfied.",
    Status.XTOL: "`xtol` termination condition is satisfied.",
    Status.FTOL_XTOL: "Both `ftol` and `xtol` termination conditions are satisfied.",
}
#: ``{status value: message}`` (the messages of :class:`Status`)
STATUS_MESSAGES = {int(k): v for k, v in _MESSAGES.items()}


class LMOptions(NamedTuple):
    """Dynamic options (arrays, so changing them does not recompile)."""

    lb: jnp.ndarray
    ub: jnp.ndarray
    ftol: jnp.ndarray
    xtol: jnp.ndarray
    gtol: jnp.ndarray
    max_nfev: jnp.ndarray
    x_scale: jnp.ndarray  # used when jac_scale is off (all zeros -> 'jac')


class LMState(NamedTuple):
    x: jnp.ndarray
    cost: jnp.ndarray
    n: jnp.ndarray
    g: jnp.ndarray
    H: jnp.ndarray
    R11: jnp.ndarray
    q: jnp.ndarray
    scale_inv: jnp.ndarray
    Delta: jnp.ndarray
    alpha: jnp.ndarray
    g_norm: jnp.ndarray
    x_trial: jnp.ndarray
    predicted: jnp.ndarray
    step_h_norm: jnp.ndarray
    step_norm: jnp.ndarray
    last_step_norm: jnp.ndarray
    accepted: jnp.ndarray
    nfev: jnp.ndarray
    nit: jnp.ndarray
    status: jnp.ndarray
    done: jnp.ndarray
    polish: jnp.ndarray        # Gauss-Newton polishing steps taken (0: not polishing)
    final_status: jnp.ndarray  # the status that ended the trust-region loop, while polishing


def make_options(lb, ub, ftol, xtol, gtol, max_nfev, x_scale=None) -> LMOptions:
    """Options as host (numpy) values; ``x_scale=None`` means MINPACK-style ``'jac'`` scaling."""
    lb = np.asarray(lb, np.float64)
    x_scale = np.zeros_like(lb) if x_scale is None else np.broadcast_to(
        np.asarray(x_scale, np.float64), lb.shape).copy()
    if np.any(x_scale < 0) or not np.all(np.isfinite(x_scale)):
        raise ValueError("x_scale must be 'jac' or positive finite numbers")
    return LMOptions(lb, np.asarray(ub, np.float64), np.float64(ftol), np.float64(xtol),
                     np.float64(gtol), np.int64(max_nfev), x_scale)


def _stats_finite(stats) -> jnp.ndarray:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in stats]))


def _propose(state: LMState, opts: LMOptions, stats_type: type) -> LMState:
    """Next trial point from the current iterate, radius and LM parameter."""
    x, g = state.x, state.g
    v, dv = cl_scaling(x, g, opts.lb, opts.ub)
    g_norm = jnp.max(jnp.abs(g * v))
    v = jnp.where(dv != 0, v * state.scale_inv, v)
    scale = 1.0 / state.scale_inv
    d = jnp.sqrt(v) * scale
    diag_h = g * dv * scale
    g_h = d * g
    theta = jnp.maximum(0.995, 1.0 - g_norm)
    s, V, suf, gn_coef = stats_type.trust_region_factor(state.g, state.H, state.R11, state.q,
                                                        d, diag_h)
    p_h, alpha = solve_lsq_trust_region(state.n, s, V, suf, gn_coef, state.Delta, state.alpha)
    Hh = d[:, None] * state.H * d[None, :]
    step, step_h, predicted = select_step(x, Hh, diag_h, g_h, d * p_h, p_h, d, state.Delta,
                                          opts.lb, opts.ub, theta)
    return state._replace(
        alpha=alpha, g_norm=g_norm,
        x_trial=make_strictly_feasible(x + step, opts.lb, opts.ub),
        predicted=predicted, step_h_norm=jnp.linalg.norm(step_h),
        step_norm=jnp.linalg.norm(step))


def _jac_scale_inv(H, old=None):
    col = jnp.sqrt(jnp.maximum(jnp.diag(H), 0.0))
    if old is None:
        return jnp.where(col == 0, 1.0, col)
    return jnp.maximum(col, old)


def _scaled_gradient_norm(x, g, opts: LMOptions):
    """``‖g·v‖∞`` with Coleman–Li's ``v``: what ``gtol`` is tested on."""
    return jnp.max(jnp.abs(g * cl_scaling(x, g, opts.lb, opts.ub)[0]))


def _check_start(state: LMState, opts: LMOptions) -> LMState:
    """gtol and max_nfev tests at the top of an outer iteration (scipy's order)."""
    g_norm = _scaled_gradient_norm(state.x, state.g, opts)
    gtol_hit = g_norm < opts.gtol
    nfev_hit = state.nfev >= opts.max_nfev
    status = jnp.where(state.done, state.status,
                       jnp.where(gtol_hit, 1, jnp.where(nfev_hit, 0, state.status)))
    return state._replace(g_norm=g_norm, status=status, done=state.done | gtol_hit | nfev_hit)


def lm_start(x0, stats, opts: LMOptions) -> LMState:
    """State at the (strictly feasible) start ``x0`` from the statistics there, before
    the first trial is proposed (:func:`lm_propose`)."""
    x0 = jnp.asarray(x0, jnp.float64)
    g, H, R11, q = stats.normal_form()
    jac_scale = jnp.all(opts.x_scale == 0)
    scale_inv = jnp.where(jac_scale, _jac_scale_inv(H), 1.0 / jnp.where(opts.x_scale > 0, opts.x_scale, 1.0))
    v, dv = cl_scaling(x0, g, opts.lb, opts.ub)
    v = jnp.where(dv != 0, v * scale_inv, v)
    Delta = jnp.linalg.norm(x0 * scale_inv / jnp.sqrt(v))
    Delta = jnp.where(Delta == 0, 1.0, Delta)
    finite = _stats_finite(stats)
    zero = jnp.float64(0.0)
    state = LMState(
        x=x0, cost=stats.cost, n=stats.n, g=g, H=H, R11=R11, q=q, scale_inv=scale_inv,
        Delta=Delta, alpha=zero, g_norm=zero, x_trial=x0, predicted=zero, step_h_norm=zero,
        step_norm=zero, last_step_norm=zero, accepted=jnp.bool_(True), nfev=jnp.int64(1),
        nit=jnp.int64(0), status=jnp.where(finite, jnp.int64(0), jnp.int64(-1)), done=~finite,
        polish=jnp.int64(0), final_status=jnp.int64(0))
    return state


def lm_propose(state: LMState, opts: LMOptions, stats_type: type = NormalStats) -> LMState:
    """The gtol and pass-budget tests at the iterate, then the next trust-region trial
    (the subproblem factored as ``stats_type``, the statistics' type, says)."""
    return _propose(_check_start(state, opts), opts, stats_type)


def lm_propose_where(flag, state: LMState, opts: LMOptions,
                     stats_type: type = NormalStats) -> LMState:
    """:func:`lm_propose` where ``flag`` (per start, for a batch), ``state`` elsewhere."""
    return _select_tree(flag, lm_propose(state, opts, stats_type), state)


# Polishing: after ftol/xtol end the trust-region loop, up to MAX_POLISH Gauss-Newton
# steps are taken while the estimated distance to the optimum exceeds settle_tolerance
# of a parameter's size; each is kept unless it raises the cost beyond rounding
# (NOISE_EPS·eps·cost, or GN_NOISE_EPS·eps·cost for a step after which the gradient
# has halved), and polishing stops when the steps shrink slower than RATE_MAX.
MAX_POLISH = 10
NOISE_EPS = 100.0
GN_NOISE_EPS = 1e4
RATE_MAX = 0.9


def gauss_newton_step(x, g, H, n, lb, ub) -> jnp.ndarray:
    """The Gauss–Newton step ``-H⁺g`` at ``x``, clipped to the bounds.

    ``H⁺`` is the Jacobi-scaled pseudo-inverse with the covariance's cut-off, so
    undetermined directions take no step. It uses the statistics at ``x`` only.
    """
    d = jnp.sqrt(jnp.maximum(jnp.diag(H), 0.0))
    d = jnp.where(d > 0, d, 1.0)
    w, V = jnp.linalg.eigh(H / jnp.outer(d, d))
    s = jnp.sqrt(jnp.maximum(w, 0.0))
    keep = s > EPS * jnp.maximum(n, x.shape[0]) * jnp.max(s)
    inv = jnp.where(keep, 1.0 / jnp.where(keep, w, 1.0), 0.0)
    step = -(V @ (inv * (V.T @ (g / d)))) / d
    return jnp.clip(x + step, lb, ub) - x


def polish_tolerance(xtol):
    """``τ = 0.1·√xtol``, the size below which a parameter counts as absolute, not
    relative, in :func:`relative_size`: with ``xtol=1e-12``, ``1e-7``."""
    return 0.1 * jnp.sqrt(xtol)


def settle_tolerance(xtol):
    """How close to the optimum a fit ends, relative: ``min(0.1·√xtol, 100·xtol)``.

    ``1e-10`` at ``xtol=1e-12`` (so that fits that differ only in the order of their
    sums, such as chunkings of the same data, agree to 1e-10), ``1e-4`` from
    ``xtol=1e-6`` up.
    """
    return jnp.minimum(polish_tolerance(xtol), 100.0 * xtol)


def relative_size(step, x, tau) -> jnp.ndarray:
    """``max_i |step_i| / (|x_i| + τ)``: the largest relative change of a parameter."""
    return jnp.max(jnp.abs(step) / (jnp.abs(x) + tau))


def settled(step, x, xtol, rate=0.0) -> jnp.ndarray:
    """Whether the optimum is within :func:`settle_tolerance` of ``x``, relative.

    Gauss–Newton converges linearly on problems with large residuals (rate ``ρ``), so
    the distance to the optimum is estimated as ``|step| / (1 - ρ)`` from the
    Gauss–Newton ``step`` at ``x`` and the rate seen over the last step. ``ftol``/``xtol``
    alone can stop a slow trust-region crawl while this distance is still in the 5th
    digit (NIST's ENSO and MGH09 at the default tolerances). A non-finite step counts
    as settled (nothing to polish with).
    """
    distance = relative_size(step, x, polish_tolerance(xtol)) / (1.0 - jnp.minimum(rate, RATE_MAX))
    return (distance <= settle_tolerance(xtol)) | ~jnp.all(jnp.isfinite(step))


def lm_consume(state: LMState, stats, opts: LMOptions):
    """Accept or reject the trial whose statistics are ``stats``, test termination, and
    set the next polishing trial: ``(state, propose)``, where ``propose`` says that the
    next trial is a trust-region one (:func:`lm_propose`), also after the fit finished
    (a resumed fit given more passes or tighter tolerances goes on from it). A finished
    state is returned unchanged, with ``propose`` False.

    When ``ftol``/``xtol`` end the trust-region iteration at a point that is not
    :func:`settled`, the next trials are Gauss–Newton steps (polishing, at most
    :data:`MAX_POLISH`, while they converge); the status is the one that ended the
    iteration.

    A step is this, then :func:`lm_propose_where`: split in two so that the large
    proposal is compiled once, shared with the start (:func:`lm_start`).
    """
    finite = _stats_finite(stats)
    actual = state.cost - stats.cost
    polishing = state.polish > 0
    Delta_new, ratio = update_tr_radius(state.Delta, actual, state.predicted, state.step_h_norm,
                                        state.step_h_norm > 0.95 * state.Delta)
    term = jnp.where(finite & ~polishing,
                     check_termination(actual, state.cost, state.step_norm,
                                       jnp.linalg.norm(state.x), ratio, opts.ftol, opts.xtol), 0)
    go_on = finite & (term == 0) & ~polishing
    alpha = jnp.where(go_on, state.alpha * state.Delta / Delta_new, state.alpha)
    Delta = jnp.where(polishing | (finite & (term != 0)), state.Delta,
                      jnp.where(finite, Delta_new, 0.25 * state.step_h_norm))
    g, H, R11, q = stats.normal_form()
    # A polishing step may not lower the cost measurably: it is kept unless it raises it
    # beyond rounding. Near the optimum the rounding of the residuals (|f|·eps each, large
    # beside small residuals) can exceed NOISE_EPS·eps·cost while the cost's true change
    # is far below it; the gradient is still exact there, so a step after which the
    # (Coleman-Li scaled) gradient has halved is kept up to GN_NOISE_EPS·eps·cost.
    tau = polish_tolerance(opts.xtol)
    converging = _scaled_gradient_norm(state.x_trial, g, opts) <= 0.5 * state.g_norm
    rise = -actual / (EPS * jnp.abs(state.cost))
    accepted = finite & jnp.where(polishing,
                                  (rise <= NOISE_EPS) | (converging & (rise <= GN_NOISE_EPS)),
                                  actual > 0)
    jac_scale = jnp.all(opts.x_scale == 0)

    def pick(new, old):
        return jnp.where(accepted, new, old)

    new = state._replace(
        x=pick(state.x_trial, state.x), cost=pick(stats.cost, state.cost), n=pick(stats.n, state.n),
        g=pick(g, state.g), H=pick(H, state.H), R11=pick(R11, state.R11), q=pick(q, state.q),
        scale_inv=jnp.where(accepted & jac_scale, _jac_scale_inv(H, state.scale_inv), state.scale_inv),
        Delta=Delta, alpha=alpha, accepted=accepted,
        last_step_norm=jnp.where(accepted, state.step_norm, 0.0),
        nfev=state.nfev + 1, nit=state.nit + accepted.astype(jnp.int64))
    ends = polishing | (term != 0)
    end_status = jnp.where(polishing, state.final_status, term)
    dx = gauss_newton_step(new.x, new.g, new.H, new.n, opts.lb, opts.ub)
    last = relative_size(state.x_trial - state.x, state.x, tau)     # the step just evaluated
    rate = jnp.where(accepted & (last > 0),
                     relative_size(dx, new.x, tau) / jnp.where(last > 0, last, 1.0), 0.0)
    more = (ends & ~settled(dx, new.x, opts.xtol, rate) & (state.polish < MAX_POLISH)
            & (accepted | ~polishing) & (~polishing | (rate < RATE_MAX))
            & (new.nfev < opts.max_nfev))
    finished = ends & ~more
    new = new._replace(status=jnp.where(finished, end_status, state.status).astype(jnp.int64),
                       done=finished, polish=jnp.where(more, state.polish + 1, 0),
                       final_status=jnp.where(more, end_status, state.final_status))
    polish = new._replace(x_trial=make_strictly_feasible(new.x + dx, opts.lb, opts.ub),
                          step_norm=jnp.linalg.norm(dx), predicted=-(
                              new.g @ dx + 0.5 * dx @ new.H @ dx),
                          g_norm=_scaled_gradient_norm(new.x, new.g, opts))
    return (_select_tree(state.done, state, _select_tree(more, polish, new)),
            ~state.done & ~more)


def _select_tree(flag, a: LMState, b: LMState) -> LMState:
    return LMState(*[jnp.where(flag, x, y) for x, y in zip(a, b)])
