"""A small library of models written with ``jax.numpy``, named for the command line."""

from __future__ import annotations

import importlib

import jax.numpy as jnp


def exponential(x, a, b, c):
    """Exponential decay ``a·exp(-b·x) + c``."""
    return a * jnp.exp(-b * x) + c


def gaussian(x, amplitude, center, sigma, offset):
    """Gaussian peak on a constant background."""
    return amplitude * jnp.exp(-0.5 * ((x - center) / sigma) ** 2) + offset


def lorentzian(x, amplitude, center, gamma, offset):
    """Lorentzian (Cauchy) peak on a constant background."""
    return amplitude * gamma**2 / ((x - center) ** 2 + gamma**2) + offset


def power_law(x, a, b):
    """Power law ``a·x^b``."""
    return a * x**b


def logistic(x, top, rate, midpoint, bottom):
    """Logistic (sigmoid) curve."""
    return bottom + (top - bottom) / (1.0 + jnp.exp(-rate * (x - midpoint)))


def damped_sine(x, amplitude, frequency, decay, phase):
    """Damped sine ``A·exp(-x/τ)·sin(2πfx + φ)``."""
    return amplitude * jnp.exp(-x / decay) * jnp.sin(2 * jnp.pi * frequency * x + phase)


MODELS = {f.__name__: f for f in (exponential, gaussian, lorentzian, power_law, logistic, damped_sine)}


def resolve_model(spec: str):
    """A built-in model by name, or ``package.module:function``.

    ``module:function`` imports that module, which runs its code with your permissions:
    name only modules you trust. Any error while importing is a ``ValueError`` naming it.
    """
    if spec in MODELS:
        return MODELS[spec]
    if ":" not in spec:
        raise ValueError(f"model must be one of {sorted(MODELS)} or 'package.module:function'; "
                         f"got {spec!r}")
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import model {spec!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - importing runs the module's code: any error
        raise ValueError(f"cannot import model {spec!r}: importing {module!r} raised "
                         f"{type(exc).__name__}: {exc}") from None
    if not callable(fn):
        raise ValueError(f"model {spec!r} is not callable")
    return fn
