"""Trust-region helpers of the reflective (Coleman–Li) method, written in ``jax.numpy``.

These follow ``scipy.optimize._lsq.common`` and ``trf`` (BSD licence) so that our
steps, and therefore our bounded results, reproduce scipy's. The one difference:
scipy works with the Jacobian ``J``; we only hold the statistics of a pass, so every
quantity is expressed through ``H = JᵀJ`` (or the TSQR factor ``R``) and ``g = Jᵀr``:
``‖J v‖² = vᵀ H v`` and the SVD of ``J`` is replaced by the eigen-decomposition of
``H`` (or the SVD of ``R``), which has the same ``V`` and singular values.
All functions are branch-free (``jnp.where``) so they trace inside ``lax.while_loop``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EPS = jnp.finfo(jnp.float64).eps


def quad(Hh, g, s, diag=None):
    """``½ sᵀ(Hh + diag)s + gᵀs`` — scipy's ``evaluate_quadratic``."""
    q = s @ Hh @ s
    if diag is not None:
        q = q + jnp.sum(diag * s * s)
    return 0.5 * q + g @ s


def quadratic_1d(Hh, g, s, diag, s0=None):
    """Coefficients of ``t ↦ quad(Hh, g, s0 + t s, diag)`` (scipy's ``build_quadratic_1d``)."""
    a = 0.5 * (s @ Hh @ s + jnp.sum(s * diag * s))
    b = g @ s
    if s0 is None:
        return a, b, 0.0
    b = b + s0 @ Hh @ s + jnp.sum(s0 * diag * s)
    c = 0.5 * (s0 @ Hh @ s0 + jnp.sum(s0 * diag * s0)) + g @ s0
    return a, b, c


def minimize_quadratic_1d(a, b, lb, ub, c=0.0):
    """Minimum of ``a t² + b t + c`` on ``[lb, ub]``: ``(t, value)``."""
    safe_a = jnp.where(a != 0, a, 1.0)
    ext = -0.5 * b / safe_a
    ext_ok = (a != 0) & (lb < ext) & (ext < ub)
    ts = jnp.stack([lb, ub, jnp.where(ext_ok, ext, lb)])
    ys = ts * (a * ts + b) + c
    ys = ys.at[2].set(jnp.where(ext_ok, ys[2], jnp.inf))
    i = jnp.argmin(ys)
    return ts[i], ys[i]


def step_size_to_bound(x, s, lb, ub):
    """Largest ``t ≥ 0`` with ``x + t s`` feasible, and which bounds it hits."""
    nz = s != 0
    s_safe = jnp.where(nz, s, 1.0)
    steps = jnp.where(nz, jnp.maximum((lb - x) / s_safe, (ub - x) / s_safe), jnp.inf)
    t = jnp.min(steps)
    hits = jnp.where(steps == t, jnp.sign(s), 0.0)
    return t, hits


def intersect_trust_region(x, s, Delta):
    """Roots ``t`` of ``‖x + t s‖ = Δ`` (``x`` inside the region)."""
    a = s @ s
    a = jnp.where(a == 0, 1.0, a)
    b = x @ s
    c = x @ x - Delta**2
    d = jnp.sqrt(jnp.maximum(b * b - a * c, 0.0))
    q = -(b + jnp.where(b >= 0, d, -d))
    q = jnp.where(q == 0, -EPS, q)
    t1, t2 = q / a, c / q
    return jnp.minimum(t1, t2), jnp.maximum(t1, t2)


def cl_scaling(x, g, lb, ub):
    """Coleman–Li scaling vector ``v`` and its derivative ``dv``."""
    up = (g < 0) & jnp.isfinite(ub)
    lo = (g > 0) & jnp.isfinite(lb)
    v = jnp.where(lo, x - lb, jnp.where(up, ub - x, 1.0))
    dv = jnp.where(lo, 1.0, jnp.where(up, -1.0, 0.0))
    return v, dv


def make_strictly_feasible(x, lb, ub):
    """Move points on or beyond a bound just inside it (scipy, ``rstep=0``)."""
    x_new = jnp.where(x <= lb, jnp.nextafter(lb, ub), x)
    x_new = jnp.where(x >= ub, jnp.nextafter(ub, lb), x_new)
    tight = (x_new < lb) | (x_new > ub)
    return jnp.where(tight, 0.5 * (jnp.asarray(lb) + jnp.asarray(ub)), x_new)


def strictly_feasible_start(x, lb, ub, rstep: float = 1e-10):
    """A start moved strictly inside the bounds, as ``scipy.optimize.least_squares`` does.

    A parameter within ``rstep·max(1, |bound|)`` of a bound (or on it) moves that far
    inside; with tight bounds it goes to their midpoint. The reflective method cannot
    move a parameter that starts exactly on a bound (its Coleman–Li scaling is zero
    there), so without this a fit started on a bound stalls. numpy in, numpy out.
    """
    import numpy as np

    x, lb, ub = (np.asarray(a, dtype=np.float64) for a in (x, lb, ub))
    lb, ub = np.broadcast_to(lb, x.shape), np.broadcast_to(ub, x.shape)
    lower_dist, upper_dist = x - lb, ub - x
    with np.errstate(invalid="ignore", over="ignore"):
        lower = np.isfinite(lb) & (lower_dist <= np.minimum(upper_dist, rstep * np.maximum(1, np.abs(lb))))
        upper = np.isfinite(ub) & (upper_dist <= np.minimum(lower_dist, rstep * np.maximum(1, np.abs(ub))))
        x_new = np.where(lower, lb + rstep * np.maximum(1, np.abs(lb)), x)
        x_new = np.where(upper, ub - rstep * np.maximum(1, np.abs(ub)), x_new)
        tight = (x_new < lb) | (x_new > ub)
        return np.where(tight, 0.5 * (lb + ub), x_new)


def solve_lsq_trust_region(n_points, s, V, suf, gn_coef, Delta, alpha0, rtol=0.01, max_iter=10):
    """Levenberg–Marquardt solution of the trust-region subproblem (Moré's method).

    ``s``: singular values of the scaled (augmented) Jacobian in descending order,
    ``V`` its right singular vectors, ``suf = s·Uᵀf = Vᵀ g_h`` and ``gn_coef = Uᵀf/s``
    (the Gauss–Newton step is ``-V gn_coef``). Returns ``(step, alpha)``.
    """
    n = s.shape[0]
    full_rank = (n_points >= n) & (s[-1] > EPS * n_points * s[0])
    p_gn = -V @ gn_coef

    def phi_and_derivative(alpha):
        denom = s**2 + alpha
        p_norm = jnp.linalg.norm(suf / denom)
        return p_norm - Delta, -jnp.sum(suf**2 / denom**3) / p_norm

    alpha_upper = jnp.linalg.norm(suf) / Delta
    phi0, dphi0 = phi_and_derivative(0.0)
    alpha_lower = jnp.where(full_rank, -phi0 / dphi0, 0.0)
    alpha_lower = jnp.where(jnp.isfinite(alpha_lower), alpha_lower, 0.0)

    def fallback(lo, up):
        return jnp.maximum(0.001 * up, jnp.sqrt(lo * up))

    alpha = jnp.where((~full_rank) & (alpha0 == 0), fallback(alpha_lower, alpha_upper), alpha0)

    def body(_, carry):
        alpha, lo, up, done = carry
        a = jnp.where((alpha < lo) | (alpha > up), fallback(lo, up), alpha)
        phi, dphi = phi_and_derivative(a)
        up_new = jnp.where(phi < 0, a, up)
        ratio = phi / dphi
        lo_new = jnp.maximum(lo, a - ratio)
        a_new = a - (phi + Delta) * ratio / Delta
        stop = jnp.abs(phi) < rtol * Delta
        return (jnp.where(done, alpha, a_new), jnp.where(done, lo, lo_new),
                jnp.where(done, up, up_new), done | stop)

    alpha, _, _, _ = jax.lax.fori_loop(0, max_iter, body, (alpha, alpha_lower, alpha_upper, False))
    p = -V @ (suf / (s**2 + alpha))
    p_norm = jnp.linalg.norm(p)
    p = jnp.where(p_norm > 0, p * (Delta / jnp.where(p_norm > 0, p_norm, 1.0)), p)
    use_gn = full_rank & (jnp.linalg.norm(p_gn) <= Delta)
    return jnp.where(use_gn, p_gn, p), jnp.where(use_gn, 0.0, alpha)


def select_step(x, Hh, diag_h, g_h, p, p_h, d, Delta, lb, ub, theta):
    """Pick the best of the TR step, its reflection and the scaled gradient step.

    Returns ``(step, step_h, predicted_reduction)`` (scipy's ``select_step``).
    """
    inside = jnp.all((x + p >= lb) & (x + p <= ub))
    p_inside_value = quad(Hh, g_h, p_h, diag_h)

    p_stride, hits = step_size_to_bound(x, p, lb, ub)
    p_stride = jnp.where(jnp.isfinite(p_stride), p_stride, 1.0)
    r_h = jnp.where(hits != 0, -p_h, p_h)
    r = d * r_h
    p_b, p_hb = p * p_stride, p_h * p_stride
    x_on_bound = x + p_b
    _, to_tr = intersect_trust_region(p_hb, r_h, Delta)
    to_bound, _ = step_size_to_bound(x_on_bound, r, lb, ub)
    r_stride = jnp.minimum(to_bound, to_tr)
    positive = r_stride > 0
    safe_rs = jnp.where(positive, r_stride, 1.0)
    r_lo = jnp.where(positive, (1 - theta) * p_stride / safe_rs, 0.0)
    r_up = jnp.where(positive, jnp.where(r_stride == to_bound, theta * to_bound, to_tr), -1.0)
    a, b, c = quadratic_1d(Hh, g_h, r_h, diag_h, s0=p_hb)
    t_r, r_value = minimize_quadratic_1d(a, b, r_lo, r_up, c)
    r_value = jnp.where(r_lo <= r_up, r_value, jnp.inf)
    r_h = p_hb + r_h * t_r
    r = r_h * d

    p_t, p_ht = p_b * theta, p_hb * theta
    p_value = quad(Hh, g_h, p_ht, diag_h)
    ag_h = -g_h
    ag = d * ag_h
    to_tr_ag = Delta / jnp.linalg.norm(ag_h)
    to_bound_ag, _ = step_size_to_bound(x, ag, lb, ub)
    ag_stride = jnp.where(to_bound_ag < to_tr_ag, theta * to_bound_ag, to_tr_ag)
    a, b, _ = quadratic_1d(Hh, g_h, ag_h, diag_h)
    t_ag, ag_value = minimize_quadratic_1d(a, b, 0.0, ag_stride)
    ag_h, ag = ag_h * t_ag, ag * t_ag

    use_p = (p_value < r_value) & (p_value < ag_value)
    use_r = (~use_p) & (r_value < p_value) & (r_value < ag_value)
    step = jnp.where(use_p, p_t, jnp.where(use_r, r, ag))
    step_h = jnp.where(use_p, p_ht, jnp.where(use_r, r_h, ag_h))
    value = jnp.where(use_p, p_value, jnp.where(use_r, r_value, ag_value))
    return (jnp.where(inside, p, step), jnp.where(inside, p_h, step_h),
            jnp.where(inside, -p_inside_value, -value))


def update_tr_radius(Delta, actual, predicted, step_norm, bound_hit):
    """New radius and the reduction ratio (scipy's ``update_tr_radius``)."""
    ratio = jnp.where(predicted > 0, actual / jnp.where(predicted > 0, predicted, 1.0),
                      jnp.where((predicted == 0) & (actual == 0), 1.0, 0.0))
    Delta = jnp.where(ratio < 0.25, 0.25 * step_norm,
                      jnp.where((ratio > 0.75) & bound_hit, 2.0 * Delta, Delta))
    return Delta, ratio


def check_termination(dF, F, dx_norm, x_norm, ratio, ftol, xtol):
    """scipy's termination test: 0 none, 2 ftol, 3 xtol, 4 both."""
    f_ok = (dF < ftol * F) & (ratio > 0.25)
    x_ok = dx_norm < xtol * (xtol + x_norm)
    return jnp.where(f_ok & x_ok, 4, jnp.where(f_ok, 2, jnp.where(x_ok, 3, 0)))


def active_constraints(x, lb, ub, rtol: float = 1e-10) -> np.ndarray:
    """Per parameter -1 (at its lower bound), 1 (at its upper bound) or 0, within ``rtol``
    relative to the bound as ``least_squares``' ``active_mask`` (host numpy)."""
    x, lb, ub = (np.asarray(a, dtype=float) for a in (x, lb, ub))
    with np.errstate(invalid="ignore"):
        lo_dist, up_dist = x - lb, ub - x
        if rtol == 0:
            return np.where(x <= lb, -1, np.where(x >= ub, 1, 0))
        lo = np.isfinite(lb) & (lo_dist <= np.minimum(up_dist, rtol * np.maximum(1, np.abs(lb))))
        up = np.isfinite(ub) & (up_dist <= np.minimum(lo_dist, rtol * np.maximum(1, np.abs(ub))))
    return np.where(lo, -1, np.where(up, 1, 0))
