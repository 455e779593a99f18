"""Point statistics of many small fits at once (the per-pixel solver's kernel).

For a tile of pixels with pixel-major data ``(B, N)``: the model called once on the
whole tile (:func:`point_model`), its Jacobian by forward-mode AD, and the sums a
Gauss–Newton step needs, ``½Σρ``, ``Jᵀr`` and ``JᵀJ`` per pixel, as one fused reduction
over the points (:func:`make_pixel_stats`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .losses import scale_for_loss
from .model import model_input


def point_model(func, x_form, p, x_shared, n_points, n_pixels):
    """``model(xs, *q) -> (B, N)`` with ``q`` the ``(B,)`` parameter rows.

    Fast path: call the model once on the whole block, broadcasting ``x`` (1 or B, N)
    against the ``(B, 1)`` parameters — the layout XLA vectorises best (a ``vmap``
    over pixels adds transposes that cost up to 2×). Models are pointwise in ``x``
    already (the statistics kernel evaluates them tile by tile); a model that does
    not broadcast this way (wrong shape or an error) falls back to ``vmap``.
    """
    shape = (n_pixels, n_points)

    def direct(xs, *q):
        xs = tuple(x[None, :] if sh else x for x, sh in zip(xs, x_shared))
        if len(set(x.shape for x in xs)) > 1:
            xs = tuple(jnp.broadcast_to(x, shape) for x in xs)
        return jnp.broadcast_to(func(model_input(xs, x_form), *[v[:, None] for v in q]), shape)

    def vmapped(xs, *q):
        axes = (tuple(None if sh else 0 for sh in x_shared), *([0] * p))
        def one(xx, *qq):
            return jnp.broadcast_to(func(model_input(xx, x_form), *qq), (n_points,))
        return jax.vmap(one, in_axes=axes)(xs, *q)

    xs_spec = tuple(jax.ShapeDtypeStruct((n_points,) if sh else shape, jnp.float64)
                    for sh in x_shared)
    q_spec = [jax.ShapeDtypeStruct((n_pixels,), jnp.float64)] * p
    try:
        if n_pixels > 1 and jax.eval_shape(direct, xs_spec, *q_spec).shape == shape:
            return direct
    except Exception:  # noqa: BLE001 - any failure means "not broadcastable"; use vmap
        pass
    return vmapped


def sum_points(terms):
    """Sums over the point axis (1) of equally shaped ``(B, N)`` terms, as ONE reduction.

    A variadic ``lax.reduce`` makes XLA emit a single loop that evaluates the model,
    its tangents and every product once per point; separate ``jnp.sum`` calls become
    one fusion per sum, each re-reading (or recomputing) the residuals and Jacobian.
    """
    zeros = (jnp.zeros((), terms[0].dtype),) * len(terms)
    return jax.lax.reduce(tuple(terms), zeros,
                          lambda a, b: tuple(u + v for u, v in zip(a, b)), (1,))


def make_pixel_stats(model, p, loss):
    """``stats(P, data) -> (cost, g, H, finite)`` on cleaned data (see :func:`clean_points`).

    Residuals ``(B, N)``, one ``jvp`` per parameter (forward mode along the basis),
    then sums over the point axis: ``½Σρ``, ``g = Σ J r`` and ``H = Σ J Jᵀ``.
    """
    pairs = [(i, j) for i in range(p) for j in range(i, p)]

    def stats(P, data):
        xs, y, w, ok = data
        qs = [P[i] for i in range(p)]

        def resid(*q):
            r = model(xs, *q) - y
            return r if w is None else r * w

        J = []
        for i in range(p):
            tangent = [jnp.ones_like(q) if k == i else jnp.zeros_like(q) for k, q in enumerate(qs)]
            r, Ji = jax.jvp(resid, qs, tangent)
            J.append(jnp.where(ok, Ji, 0.0))
        r = jnp.where(ok, r, 0.0)
        rho0, r, J = scale_for_loss(r, jnp.stack(J), loss[0], loss[1])
        sums = sum_points([jnp.where(ok, rho0, 0.0)] + [J[i] * r for i in range(p)]
                           + [J[i] * J[j] for i, j in pairs])
        cost, g = 0.5 * sums[0], jnp.stack(sums[1:p + 1])
        H = [[None] * p for _ in range(p)]
        for (i, j), h in zip(pairs, sums[p + 1:]):
            H[i][j] = H[j][i] = h
        H = jnp.stack([jnp.stack(row) for row in H])
        finite = jnp.isfinite(cost) & jnp.all(jnp.isfinite(g), axis=0) \
            & jnp.all(jnp.isfinite(H), axis=(0, 1))
        return cost, g, H, finite

    return stats


def clean_points(xs, y, w):
    """``(xs, y, w, ok)`` with ``ok`` the usable points (finite, positive weight) and
    every unusable value replaced by 0, so no NaN reaches the model or a sum."""
    ok = jnp.isfinite(y)
    if w is not None:
        ok &= jnp.isfinite(w) & (w > 0)
    for x in xs:
        ok &= jnp.isfinite(x if x.ndim == 2 else x[None, :])
    xs = tuple(jnp.where(jnp.isfinite(x), x, 0.0) for x in xs)
    return xs, jnp.where(ok, y, 0.0), None if w is None else jnp.where(ok, w, 0.0), ok
