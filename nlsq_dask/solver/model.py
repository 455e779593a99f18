"""Model wrapping: ``model(x, *params)`` written with ``jax.numpy``.

A model receives ``x`` in the form the user handed it to :func:`nlsq_dask.fit`:
a 1-D array, a ``(k, N)`` array, or a tuple of ``k`` 1-D arrays. Internally the
inputs always travel as a tuple of 1-D arrays (so a tile or a partition is a
slice of each), and :meth:`ModelSpec.evaluate` rebuilds the user's form.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

X_FORMS = ("vector", "stacked", "tuple")
# points the identity is traced on (any length works: a pointwise model's jaxpr differs
# only in shapes)
IDENTITY_POINTS = 8
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A model function plus how to call it.

    Parameters
    ----------
    func : callable
        ``func(x, *params)`` returning the model values at ``x``.
    param_names : tuple of str
        One name per parameter.
    x_form : {'vector', 'stacked', 'tuple'}
        How ``x`` is presented to ``func``: a 1-D array, a ``(k, N)`` array or a
        tuple of 1-D arrays.
    n_inputs : int
        Number of independent variables ``k``.
    x_lead : tuple of int
        For ``'stacked'`` inputs of more than two dimensions, the leading shape: ``x``
        is handed over as an array of shape ``x_lead + (N,)`` (scipy's N-D ``xdata``,
        whose last axis is the point axis). Empty: ``(k, N)``.
    jac : callable, optional
        ``jac(x, *params)`` returning the ``(N, p)`` Jacobian of the model (scipy's
        layout), written with ``jax.numpy`` and pointwise like the model; used instead of
        forward-mode autodiff.

    Two specs are equal when they take the same inputs and parameters and compute the
    same thing (:attr:`identity`), whatever function objects they hold: compiled
    kernels are cached under it, so a redefined but identical model reuses them and an
    edited one (a changed constant, a rebound global, a reloaded helper) never does.
    """

    func: Callable
    param_names: tuple[str, ...]
    x_form: str = "vector"
    n_inputs: int = 1
    x_lead: tuple[int, ...] = ()
    jac: Callable | None = None

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @cached_property
    def identity(self) -> str:
        """sha256 of what the model computes: see :func:`model_identity`."""
        return model_identity(self)

    def _key(self):
        return (self.identity, self.param_names, self.x_form, self.n_inputs, self.x_lead)

    def __eq__(self, other):
        return isinstance(other, ModelSpec) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def evaluate(self, xs: Sequence, params) -> jnp.ndarray:
        """Model values at the inputs ``xs`` (a tuple of 1-D arrays)."""
        out = self.func(model_input(xs, self.x_form, self.x_lead),
                        *[params[i] for i in range(self.n_params)])
        return jnp.broadcast_to(jnp.asarray(out), xs[0].shape)

    def jacobian(self, xs: Sequence, params) -> jnp.ndarray:
        """The user's ``jac`` at ``xs`` as a ``(p, N)`` array (None without one)."""
        if self.jac is None:
            return None
        out = jnp.asarray(self.jac(model_input(xs, self.x_form, self.x_lead),
                                   *[params[i] for i in range(self.n_params)]))
        n = xs[0].shape[0]
        if out.ndim == 1 and self.n_params == 1:       # one parameter: (N,) is (N, 1)
            out = out[:, None]
        if out.ndim != 2 or out.shape[1] != self.n_params:
            raise ValueError(f"jac must return an array of shape (N, {self.n_params}) (one "
                             f"column per parameter, as scipy's); got shape {tuple(out.shape)}")
        return jnp.broadcast_to(out, (n, self.n_params)).T


def model_identity(spec: ModelSpec) -> str:
    """sha256 of the jaxpr of the model's value and its derivative in the parameters,
    traced on abstract inputs, and of the constants it closes over.

    The jaxpr is what JAX compiles, so the digest covers everything the model computes:
    its code, closures, module-level constants, globals it looks up (``FUNC =
    jnp.expm1``), helpers in other modules and custom derivative rules. Code that
    computes the same thing gets the same digest. A model JAX cannot differentiate is
    digested by its value alone; one it cannot trace at all (refused before any fit) gets
    a digest no other model shares.
    """
    import jax

    point = jax.ShapeDtypeStruct((IDENTITY_POINTS,), np.float64)
    params = jax.ShapeDtypeStruct((spec.n_params,), np.float64)
    xs = (point,) * spec.n_inputs

    def value_and_derivative(xs, p, t):
        if spec.jac is not None:
            return spec.evaluate(xs, p), spec.jacobian(xs, p).T @ t
        return jax.jvp(lambda q: spec.evaluate(xs, q), (p,), (t,))

    try:
        closed = jax.make_jaxpr(value_and_derivative)(xs, params, params)
    except Exception:  # noqa: BLE001 - e.g. a callback without a derivative rule
        try:
            closed = jax.make_jaxpr(spec.evaluate)(xs, params)
        except Exception:  # noqa: BLE001 - check_model reports why, before any fit
            return f"untraceable-{uuid.uuid4().hex}"
    return jaxpr_digest(closed)


def jaxpr_digest(closed) -> str:
    """sha256 of a closed jaxpr: its text (object addresses left out) and its constants'
    dtypes, shapes and bytes."""
    h = hashlib.sha256(_ADDRESS.sub("", str(closed.jaxpr)).encode())
    for const in closed.consts:
        a = np.asarray(const)
        h.update(f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def model_input(xs: Sequence, x_form: str, x_lead: tuple[int, ...] = ()):
    """The inputs ``xs`` (a sequence of arrays) as a model receives ``x`` (see ``x_form``
    and ``x_lead``)."""
    if x_form == "vector":
        return xs[0]
    if x_form == "stacked":
        stacked = jnp.stack(xs)
        return stacked.reshape(*x_lead, stacked.shape[-1]) if x_lead else stacked
    return tuple(xs)


def infer_param_names(func: Callable, param_names=None, n_params: int | None = None) -> tuple[str, ...]:
    """Parameter names from ``param_names``, else ``func``'s signature.

    The first positional argument of ``func`` is ``x``; the remaining positional
    arguments are the parameters. A model taking ``*params`` needs
    ``param_names`` or ``p0`` (then the names are ``p0, p1, ...``).
    """
    if param_names is not None:
        names = tuple(str(n) for n in param_names)
        if len(set(names)) != len(names):
            raise ValueError(f"param_names must be unique, got {list(names)}")
        if n_params is not None and len(names) != n_params:
            raise ValueError(
                f"param_names has {len(names)} names but p0 has {n_params} values: give one "
                "p0 value per name, in the order of param_names"
            )
        return names
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:  # builtins, some C callables
        if n_params is None:
            raise TypeError(
                "cannot read the model's parameters from its signature; "
                "pass p0 or param_names"
            ) from exc
        return tuple(f"p{i}" for i in range(n_params))
    params = list(sig.parameters.values())
    if not params:
        raise TypeError("model must take x as its first argument: model(x, *params)")
    rest = params[1:]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in rest):
        if n_params is None:
            raise TypeError(
                "the model takes *params, so the number of parameters is unknown; "
                "pass p0 or param_names"
            )
        return tuple(f"p{i}" for i in range(n_params))
    names = tuple(
        p.name
        for p in rest
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    if not names:
        raise TypeError("model takes no parameters: expected model(x, a, b, ...)")
    if n_params is not None and len(names) != n_params:
        raise ValueError(
            f"p0 has {n_params} values but the model takes {len(names)} parameters "
            f"{list(names)}: pass one start value per parameter in that order (a model taking "
            "*params needs param_names=[...])"
        )
    return names
