"""Robust loss functions with scipy's definitions.

For ``z = (r / C)**2`` each loss returns ``rho = (C**2 ρ(z), ρ'(z), ρ''(z) / C**2)``
exactly as ``scipy.optimize.least_squares`` does, and :func:`scale_for_loss`
rescales residuals and Jacobian rows so that ``JᵀJ`` is the Gauss–Newton model of
the robust cost (scipy's ``scale_for_robust_loss_function``).
"""

from __future__ import annotations

import jax.numpy as jnp

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
_EPS = jnp.finfo(jnp.float64).eps


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")
    return loss


def _rho_unit(z, loss):
    if loss == "linear":
        return z, jnp.ones_like(z), jnp.zeros_like(z)
    if loss == "soft_l1":
        t = 1.0 + z
        return 2.0 * (jnp.sqrt(t) - 1.0), t**-0.5, -0.5 * t**-1.5
    if loss == "huber":
        inner = z <= 1.0
        zs = jnp.where(inner, 1.0, z)  # keeps the unused branch finite
        return (
            jnp.where(inner, z, 2.0 * jnp.sqrt(zs) - 1.0),
            jnp.where(inner, 1.0, zs**-0.5),
            jnp.where(inner, 0.0, -0.5 * zs**-1.5),
        )
    if loss == "cauchy":
        t = 1.0 + z
        return jnp.log1p(z), 1.0 / t, -1.0 / t**2
    if loss == "arctan":
        t = 1.0 + z**2
        return jnp.arctan(z), 1.0 / t, -2.0 * z / t**2
    raise ValueError(f"loss must be one of {list(LOSSES)}, got {loss!r}")


def rho(r, loss: str, f_scale):
    """scipy's ``rho`` triple for residuals ``r``."""
    z = (r / f_scale) ** 2
    r0, r1, r2 = _rho_unit(z, loss)
    return r0 * f_scale**2, r1, r2 / f_scale**2


def scale_for_loss(r, J, loss: str, f_scale):
    """Robust cost terms and rescaled ``(r, J)``; ``J`` has shape ``(p, T)``."""
    if loss == "linear":
        return r * r, r, J
    r0, r1, r2 = rho(r, loss, f_scale)
    j_scale = r1 + 2.0 * r2 * r * r
    j_scale = jnp.sqrt(jnp.where(j_scale < _EPS, _EPS, j_scale))
    return r0, r * r1 / j_scale, J * j_scale
