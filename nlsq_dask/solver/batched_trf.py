"""scipy's trust-region reflective iteration, elementwise over a trailing pixel axis.

The per-pixel solver (:mod:`~nlsq_dask.solver.batched`) runs the method of the global
fits (:mod:`~nlsq_dask.solver.lm`: ``least_squares(method='trf', tr_solver='exact',
x_scale='jac')``) on a tile of pixels at once. Every array has the pixels last (``x``
is ``(p, B)``, ``H`` is ``(p, p, B)``), so the algebra is elementwise over contiguous
pixels. :func:`start` takes the statistics at the start, :func:`iterate` makes one
trial (one evaluation) of every running pixel.

Coleman–Li scaling, ``select_step``'s reflected and bound-limited steps, the radius
update and the termination tests are :mod:`~nlsq_dask.solver.trust_region`'s, mapped
over the pixels. The trust-region subproblem differs in its linear algebra only:

* the global fits (and scipy) take Moré's iteration for the Levenberg–Marquardt
  parameter from an eigen- (singular value) decomposition. Batched over tiny
  matrices on a CPU that decomposition costs more than the rest of a fit (LAPACK's
  ``eigh``; as unrolled Jacobi rotations still about as much as the point sums), so a
  pixel whose scaled ``JᵀJ`` is well-conditioned runs the same iterates through
  ``LDLᵀ`` factorisations of ``JᵀJ + αI`` (:func:`_subproblem_ldl`);
* a tile holding a running pixel whose ``JᵀJ`` is singular to working precision
  also runs :func:`~nlsq_dask.solver.trust_region.solve_lsq_trust_region` on a
  Jacobi eigen-decomposition (:func:`~nlsq_dask.solver.covariance.jacobi_eigh`), for
  scipy's treatment of rank-deficient Jacobians.

Unlike the global fits there is no Gauss–Newton polish after ``ftol``/``xtol`` (scipy
has none), so results, evaluation counts and statuses are those of ``least_squares``
with ``x_scale='jac'`` up to rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .covariance import jacobi_eigh
from .trust_region import (EPS, check_termination, cl_scaling, make_strictly_feasible, select_step,
                           solve_lsq_trust_region, update_tr_radius)


class State(NamedTuple):
    """One tile's iterate and trust region (pixels last)."""

    x: jnp.ndarray          # (p, B)
    cost: jnp.ndarray       # (B,)  ½ Σ ρ at x
    g: jnp.ndarray          # (p, B)  loss-rescaled Jᵀr at x
    H: jnp.ndarray          # (p, p, B)  loss-rescaled JᵀJ at x
    n: jnp.ndarray          # (B,)  usable points
    scale_inv: jnp.ndarray  # (p, B)  running maximum of J's column norms (x_scale='jac')
    Delta: jnp.ndarray      # (B,)  trust radius
    alpha: jnp.ndarray      # (B,)  Levenberg–Marquardt parameter
    nfev: jnp.ndarray       # (B,)  function evaluations
    status: jnp.ndarray     # (B,)
    done: jnp.ndarray       # (B,)


class Options(NamedTuple):
    ftol: jnp.ndarray
    xtol: jnp.ndarray
    gtol: jnp.ndarray
    max_nfev: jnp.ndarray


def _per_pixel(fn):
    """``fn`` of one pixel's arrays, mapped over the trailing axis of every argument."""
    return jax.vmap(fn, in_axes=-1, out_axes=-1)


_solve_subproblem = _per_pixel(solve_lsq_trust_region)
_select_step = _per_pixel(select_step)
_TINY = 1e-300
#: condition number of the scaled ``JᵀJ`` from which it counts as singular to working
#: precision (its subproblem takes the eigen-decomposition path)
COND_MAX = 1.0 / float(EPS)


def _norm(v):
    return jnp.sqrt(jnp.sum(v * v, axis=0))


def _column_norms(H):
    return jnp.sqrt(jnp.maximum(jnp.diagonal(H, axis1=0, axis2=1).T, 0.0))


def _g_norm(x, g, lb, ub):
    """``‖g·v‖∞`` with Coleman–Li's ``v``: the gradient test of scipy's ``trf``."""
    return jnp.max(jnp.abs(g * cl_scaling(x, g, lb, ub)[0]), axis=0)


def _eigh_descending(A):
    """Eigenvalues (descending) and eigenvectors of symmetric ``A`` (p, p, B), as the
    trust-region solver wants them; the sort is a network of elementwise swaps."""
    p = A.shape[0]
    w, V = jacobi_eigh(A, sweeps=3 + (p + 1) // 2)
    w, V = [w[i] for i in range(p)], [V[:, i] for i in range(p)]
    for end in range(p - 1, 0, -1):
        for i in range(end):
            swap = w[i] < w[i + 1]
            w[i], w[i + 1] = jnp.where(swap, w[i + 1], w[i]), jnp.where(swap, w[i], w[i + 1])
            V[i], V[i + 1] = jnp.where(swap, V[i + 1], V[i]), jnp.where(swap, V[i], V[i + 1])
    return jnp.stack(w), jnp.stack(V, axis=1)


def start(x0, n, cost, g, H, finite, lb, ub, opts: Options) -> State:
    """State at the strictly feasible ``x0`` from the statistics there (one evaluation)."""
    p = x0.shape[0]
    col = _column_norms(H)
    scale_inv = jnp.where(col == 0, 1.0, col)
    v, dv = cl_scaling(x0, g, lb, ub)
    v = jnp.where(dv != 0, v * scale_inv, v)
    Delta = _norm(x0 * scale_inv / jnp.sqrt(v))
    finite = finite & (n >= max(p, 1))      # fewer points than parameters: undetermined
    gtol_hit = finite & (_g_norm(x0, g, lb, ub) < opts.gtol)
    status = jnp.where(finite, jnp.where(gtol_hit, 1, 0), -1).astype(jnp.int64)
    return State(x0, cost, g, H, n, scale_inv, jnp.where(Delta == 0, 1.0, Delta),
                 jnp.zeros_like(cost), jnp.ones(cost.shape, jnp.int64), status,
                 ~finite | gtol_hit | (opts.max_nfev <= 1))


def _quad(Hh, diag_h, g_h, v):
    """``½ vᵀ(Hh + diag(diag_h))v + g_hᵀv`` per pixel (scipy's ``evaluate_quadratic``)."""
    Hv = jnp.sum(Hh * v[None, :, :], axis=1)
    return 0.5 * jnp.sum(v * Hv + diag_h * v * v, axis=0) + jnp.sum(g_h * v, axis=0)


def _ldl(A, shift):
    """``A + shift·I = L·D·Lᵀ`` (``L`` unit lower triangular): ``(L, 1/D)``.

    ``A`` is nested lists of ``(B,)`` arrays; the factorisation is unrolled over the
    static size, elementwise over the pixels, and free of square roots (each costs as
    much as a division, and this runs in the inner loop of the subproblem)."""
    p = len(A)
    L, D, inv = [[None] * p for _ in range(p)], [None] * p, [None] * p
    for j in range(p):
        D[j] = jnp.maximum(A[j][j] + shift - sum((L[j][k] * L[j][k] * D[k] for k in range(j)),
                                                 0.0), _TINY)
        inv[j] = 1.0 / D[j]
        for i in range(j + 1, p):
            L[i][j] = (A[i][j] - sum((L[i][k] * L[j][k] * D[k] for k in range(j)), 0.0)) * inv[j]
    return L, inv


def _unit_lower_solve(L, b):
    z = []
    for i in range(len(b)):
        z.append(b[i] - sum((L[i][k] * z[k] for k in range(i)), 0.0))
    return z


def _ldl_solve(L, inv, b):
    """``(L·D·Lᵀ)⁻¹ b``."""
    y = [zi * di for zi, di in zip(_unit_lower_solve(L, b), inv)]
    p = len(y)
    x = [None] * p
    for i in reversed(range(p)):
        x[i] = y[i] - sum((L[k][i] * x[k] for k in range(i + 1, p)), 0.0)
    return x


def _inverse_form(L, inv, v):
    """``vᵀ(L·D·Lᵀ)⁻¹v``."""
    return sum(wi * wi * di for wi, di in zip(_unit_lower_solve(L, v), inv))


def _lm_step(A, g_h, alpha, factors=None):
    """``p = -(A + αI)⁻¹ g_h``, ``‖p‖`` and ``pᵀ(A + αI)⁻¹p`` (``= Σ suf²/(s²+α)³``, the
    derivative's numerator in scipy's ``phi_and_derivative``); ``factors``: those of
    :func:`_ldl` if already at hand."""
    L, inv = factors or _ldl(A, alpha)
    p = _ldl_solve(L, inv, [-gi for gi in g_h])
    return p, jnp.sqrt(sum(pi * pi for pi in p)), _inverse_form(L, inv, p)


def _subproblem_ldl(A, g_h, n, Delta, alpha0, skip, rtol=0.01, max_iter=10):
    """scipy's ``solve_lsq_trust_region`` for full-rank pixels, through ``LDLᵀ``
    factorisations of ``A + αI`` instead of an SVD (MINPACK's ``lmpar`` also factorises
    per ``α``).

    The iterates of the LM parameter ``α`` are scipy's; the loop ends when every pixel
    not in ``skip`` has converged (scipy's ``break``), at most ``max_iter`` times.
    Returns ``(p_h, alpha, fast)``: ``fast`` is False where ``A`` is too ill-conditioned
    for this path to be sure that scipy would call it full-rank; those pixels must
    take :func:`~nlsq_dask.solver.trust_region.solve_lsq_trust_region`.
    """
    p = len(g_h)
    L, inv = _ldl(A, 0.0)
    p_gn, gn_norm, gn_form = _lm_step(A, g_h, 0.0, (L, inv))
    # cond(A) ≤ tr(A)·tr(A⁻¹): a cheap bound on scipy's rank test
    tr_inv = sum(_inverse_form(L, inv, [1.0 if k == i else 0.0 for k in range(p)])
                 for i in range(p))
    trace = sum(A[i][i] for i in range(p))
    fast = (n >= p) & jnp.isfinite(tr_inv) & (trace * tr_inv < COND_MAX)
    use_gn = gn_norm <= Delta
    inv_Delta = 1.0 / Delta
    alpha_upper = jnp.sqrt(sum(gi * gi for gi in g_h)) * inv_Delta
    alpha_lower = (gn_norm - Delta) * gn_norm / gn_form           # -phi(0)/phi'(0)
    alpha_lower = jnp.where(jnp.isfinite(alpha_lower), alpha_lower, 0.0)

    def body(carry):
        i, alpha, lo, up, stop = carry
        a = jnp.where((alpha < lo) | (alpha > up), jnp.maximum(0.001 * up, jnp.sqrt(lo * up)),
                      alpha)
        _, p_norm, qq = _lm_step(A, g_h, a)
        phi = p_norm - Delta
        ratio = -phi * p_norm / qq                          # phi / phi'
        new = (a - p_norm * ratio * inv_Delta, jnp.maximum(lo, a - ratio),
               jnp.where(phi < 0, a, up))
        kept = [jnp.where(stop, o, v) for o, v in zip((alpha, lo, up), new)]
        return (i + 1, *kept, stop | (jnp.abs(phi) < rtol * Delta))

    alpha = jax.lax.while_loop(lambda c: (c[0] < max_iter) & ~jnp.all(c[4]), body,
                               (0, alpha0, alpha_lower, alpha_upper, skip | ~fast | use_gn))[1]
    p_lm, p_norm, _ = _lm_step(A, g_h, alpha)
    scale = jnp.where(p_norm > 0, Delta / jnp.where(p_norm > 0, p_norm, 1.0), 1.0)
    p_h = jnp.stack([jnp.where(use_gn, a, b * scale) for a, b in zip(p_gn, p_lm)])
    return p_h, jnp.where(use_gn, 0.0, alpha), fast


def _subproblem_eigen(H, g_h, n, Delta, alpha0):
    """:func:`~nlsq_dask.solver.trust_region.solve_lsq_trust_region` on every pixel,
    from a Jacobi eigen-decomposition of ``H`` (``(p, p, B)``)."""
    w, V = _eigh_descending(H)
    sv = jnp.sqrt(jnp.maximum(w, 0.0))
    suf = jnp.sum(V * g_h[:, None, :], axis=0)
    gn_coef = suf / jnp.where(sv > 0, sv**2, 1.0)
    return _solve_subproblem(n, sv, V, suf, gn_coef, Delta, alpha0)


def _propose(s: State, lb, ub):
    """scipy's trial step from ``s``: ``(step, step_h, predicted reduction, alpha)``.

    The trust-region subproblem of a well-conditioned pixel is solved through LDLᵀ
    factorisations (:func:`_subproblem_ldl`); only a tile holding an
    ill-conditioned running pixel also runs the eigen-decomposition path
    (:func:`_subproblem_eigen`), and only a tile with a step leaving its bounds runs
    ``select_step`` (which returns a step inside the bounds unchanged). The pixels
    that do not need them take the same values either way, so what a tile runs does
    not change any pixel's result.
    """
    v, dv = cl_scaling(s.x, s.g, lb, ub)
    theta = jnp.maximum(0.995, 1.0 - jnp.max(jnp.abs(s.g * v), axis=0))
    v = jnp.where(dv != 0, v * s.scale_inv, v)
    scale = 1.0 / s.scale_inv
    d = jnp.sqrt(v) * scale
    diag_h = s.g * dv * scale
    g_h = d * s.g
    Hh = d[:, None] * s.H * d[None, :]
    p = s.x.shape[0]
    A = [[Hh[i, j] + diag_h[i] if i == j else Hh[i, j] for j in range(p)] for i in range(p)]
    p_h, alpha, fast = _subproblem_ldl(A, list(g_h), s.n, s.Delta, s.alpha, s.done)

    def eigen():
        pe, ae = _subproblem_eigen(Hh + jnp.eye(p)[:, :, None] * diag_h[None, :, :], g_h, s.n,
                                   s.Delta, s.alpha)
        return jnp.where(fast, p_h, pe), jnp.where(fast, alpha, ae)

    p_h, alpha = jax.lax.cond(jnp.all(fast | s.done), lambda: (p_h, alpha), eigen)
    step = d * p_h
    inside = jnp.all((s.x + step >= lb) & (s.x + step <= ub), axis=0)
    kept = step, p_h, -_quad(Hh, diag_h, g_h, p_h)

    def select():
        chosen = _select_step(s.x, Hh, diag_h, g_h, step, p_h, d, s.Delta, lb, ub, theta)
        return tuple(jnp.where(inside, a, b) for a, b in zip(kept, chosen))

    step, step_h, predicted = jax.lax.cond(jnp.all(inside | s.done), lambda: kept, select)
    return step, step_h, predicted, alpha


def iterate(s: State, stats, lb, ub, opts: Options) -> State:
    """One trial of every running pixel: propose, evaluate ``stats(x_trial)`` (one
    evaluation), accept or reject, update the radius, test termination. A rejected
    trial leaves the iterate as it was, so the next call solves the subproblem again
    with the smaller radius (scipy's inner loop)."""
    step, step_h, predicted, alpha = _propose(s, lb, ub)
    xt = make_strictly_feasible(s.x + step, lb, ub)
    ct, gt, Ht, fin = stats(xt)
    actual = s.cost - ct
    step_h_norm = _norm(step_h)
    Delta_new, ratio = update_tr_radius(s.Delta, actual, predicted, step_h_norm,
                                        step_h_norm > 0.95 * s.Delta)
    term = jnp.where(fin, check_termination(actual, s.cost, _norm(step), _norm(s.x), ratio,
                                            opts.ftol, opts.xtol), 0)
    go_on = fin & (term == 0)
    accept = fin & (actual > 0)
    x = jnp.where(accept, xt, s.x)
    g = jnp.where(accept, gt, s.g)
    nfev = s.nfev + 1
    gtol_hit = _g_norm(x, g, lb, ub) < opts.gtol      # scipy: gtol outranks ftol/xtol
    new = State(
        x, jnp.where(accept, ct, s.cost), g, jnp.where(accept, Ht, s.H), s.n,
        jnp.where(accept, jnp.maximum(_column_norms(Ht), s.scale_inv), s.scale_inv),
        jnp.where(fin, jnp.where(go_on, Delta_new, s.Delta), 0.25 * step_h_norm),
        jnp.where(go_on, alpha * s.Delta / Delta_new, alpha), nfev,
        jnp.where(gtol_hit, 1, term).astype(jnp.int64),
        (term != 0) | gtol_hit | (nfev >= opts.max_nfev))
    return State(*[jnp.where(s.done, a, b) for a, b in zip(s, new)])
