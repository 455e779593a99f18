"""Robust loss functions with scipy's definitions.

For ``z = (r / C)**2`` each loss returns ``rho = (C**2 ρ(z), ρ'(z), ρ''(z) / C**2)``
exactly as ``scipy.optimize.least_squares`` does, and :func:`scale_for_loss`
rescales residuals and Jacobian rows so that ``JᵀJ`` is the Gauss–Newton model of
the robust cost (scipy's ``scale_for_robust_loss_function``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import jax.numpy as jnp
import numpy as np

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
_EPS = jnp.finfo(jnp.float64).eps


@dataclass(frozen=True, eq=False)
class CustomLoss:
    """A callable loss as scipy's ``least_squares`` takes it: ``rho(z)`` of the squared
    scaled residuals ``z`` returning a ``(3, N)`` array ``(ρ(z), ρ'(z), ρ''(z))``, written
    with ``jax.numpy`` (it runs inside the kernels) and elementwise in ``z``.

    Equal (and cached) by what it computes, like :class:`~nlsq_dask.solver.ModelSpec`.
    """

    func: Callable

    @cached_property
    def identity(self) -> str:
        import jax

        from .model import jaxpr_digest

        try:
            closed = jax.make_jaxpr(self.func)(jax.ShapeDtypeStruct((8,), np.float64))
        except Exception as exc:  # noqa: BLE001 - said in the message
            raise TypeError(f"a callable loss must be rho(z) -> (3, N) written with jax.numpy; "
                            f"tracing it failed ({type(exc).__name__}: {exc})") from exc
        return jaxpr_digest(closed)

    def __eq__(self, other):
        return isinstance(other, CustomLoss) and self.identity == other.identity

    def __hash__(self):
        return hash(self.identity)

    def __str__(self):
        return f"callable:{getattr(self.func, '__name__', 'loss')}:{self.identity[:12]}"

    def __call__(self, z):
        out = self.func(z)
        if isinstance(out, (tuple, list)):
            out = jnp.stack([jnp.broadcast_to(jnp.asarray(v), z.shape) for v in out])
        out = jnp.asarray(out)
        if out.shape != (3,) + z.shape:
            raise ValueError(f"a callable loss must return an array of shape (3, N) (rho, its "
                             f"first and second derivatives); got shape {tuple(out.shape)} for "
                             f"N={z.shape[0]}")
        return out[0], out[1], out[2]


def check_loss(loss):
    """``loss`` if it is a loss name or a :class:`CustomLoss`; a callable is wrapped in one
    (and traced, so a loss JAX cannot trace is refused here)."""
    if isinstance(loss, CustomLoss):
        loss.identity       # traced now: a loss JAX cannot trace is refused here
        return loss
    if callable(loss):
        return check_loss(CustomLoss(loss))
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)} or a callable rho(z) -> (3, N), "
                         f"got {loss!r}")
    return loss


def _rho_unit(z, loss):
    if isinstance(loss, CustomLoss):
        return loss(z)
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
