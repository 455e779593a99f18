"""Is the model usable? It must trace with JAX and be *pointwise* in ``x``.

The kernels evaluate the model on blocks of points — tiles, partitions, padded
buckets — never on the whole data at once. That gives the right answer only when the
model's value at a point depends on that point's ``x`` (and the parameters) alone:
``a * jnp.exp(-b * x) + c`` is pointwise, ``a * (x - jnp.mean(x)) + b`` is not (the
mean is over the block), nor is ``a * x + b - target`` with ``target`` an array of
one value per data point (its length is the data's, not the block's).

:func:`check_model` finds out before the first pass, on a few synthetic points and
no data: the model is evaluated on a short block alone, at the start and at the end
of a longer block, and next to the zeros the kernels pad with; a pointwise model
gives the same values every time. A model that traces at the data's full length but
not at the block's closes over a per-point array.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import NotPointwiseError
from .model import ModelSpec

PROBE_POINTS = 16

POINTWISE_RULE = (
    "A model must be pointwise: its value at each point may depend only on that point's x "
    "and the parameters, because it is evaluated on blocks of points (tiles, partitions, "
    "padding), never on all the data at once. Do not reduce over x (jnp.mean, jnp.sum, "
    "jnp.max, cumulative sums, x[0], ...) and do not close over an array with one value per "
    "data point: pass such arrays as extra rows of x (x = np.stack([t, target]), then "
    "x[0], x[1] in the model) or as a tuple x = (t, target)")


def _probe_inputs(n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Two blocks of ``PROBE_POINTS`` points per input, with different values (positive,
    away from 0 and 1, not integers, so logs, roots and powers are defined)."""
    i = np.arange(PROBE_POINTS, dtype=np.float64)
    a = np.stack([0.3 + 0.7 * (i + 0.5) / PROBE_POINTS + 0.05 * k for k in range(n_inputs)])
    b = np.stack([1.7 + 1.3 * (i + 0.25) / PROBE_POINTS + 0.07 * k for k in range(n_inputs)])
    return a, b


def _trace_at(spec: ModelSpec, params, length: int):
    """The model's output shape and dtype on ``length`` points, or the exception tracing
    raised."""
    import jax

    xs = tuple(jax.ShapeDtypeStruct((length,), np.float64) for _ in range(spec.n_inputs))
    try:
        return jax.eval_shape(lambda xs, p: spec.evaluate(xs, p), xs,
                              np.asarray(params, np.float64))
    except Exception as exc:  # noqa: BLE001 - any failure here means "not at this length"
        return exc


def check_model(spec: ModelSpec, params, n_points: int | None = None) -> None:
    """Raise unless the model traces with JAX and is pointwise in ``x``.

    Parameters
    ----------
    spec : ModelSpec
        The model and how ``x`` is handed to it.
    params : (p,) array_like
        Parameter values to evaluate at (the start).
    n_points : int, optional
        The data's number of points: a model that only traces at this length closes over
        a per-point array.

    Raises
    ------
    NotPointwiseError
        The model's value at a point depends on other points (a ``ValueError``).
    TypeError
        The model cannot be traced by JAX.
    """
    params = np.asarray(params, dtype=np.float64)
    traced = _trace_at(spec, params, PROBE_POINTS)
    if isinstance(traced, Exception):
        if n_points and n_points != PROBE_POINTS \
                and not isinstance(_trace_at(spec, params, n_points), Exception):
            raise NotPointwiseError(
                f"the model works on all {n_points:,} points at once but not on a block of "
                f"{PROBE_POINTS} ({type(traced).__name__}: {_first_line(traced)}): it closes "
                f"over an array with one value per data point. {POINTWISE_RULE}") from traced
        raise TypeError(
            f"the model cannot be traced by JAX ({type(traced).__name__}: "
            f"{_first_line(traced)}). Write it with jax.numpy (jnp.exp, jnp.where, ...) rather "
            "than numpy or math, avoid float()/int() and Python if on parameters, and make it "
            "return values shaped like x") from traced
    if not np.issubdtype(traced.dtype, np.floating):
        raise TypeError(f"the model returns {traced.dtype} values; it must return real floating "
                        "point values (take jnp.real, jnp.abs or split real and imaginary parts "
                        "into separate observations)")
    a, b = _probe_inputs(spec.n_inputs)
    m = PROBE_POINTS
    blocks = (a, np.concatenate([a, b], axis=1), np.concatenate([b, a], axis=1),
              np.concatenate([a, np.zeros_like(a)], axis=1))
    alone, start, end, padded = (np.asarray(v, dtype=np.float64)
                                 for v in _placements(spec)(blocks, params))
    placements = {
        "at the start of a longer block": start[:m],
        "at the end of a longer block": end[m:],
        "next to padding": padded[:m],
    }
    scale = np.nanmax(np.abs(np.where(np.isfinite(alone), alone, np.nan)), initial=1.0)
    for where, got in placements.items():
        if not np.allclose(got, alone, rtol=1e-9, atol=1e-12 * scale, equal_nan=True):
            i = int(np.argmax(~np.isclose(got, alone, rtol=1e-9, atol=1e-12 * scale,
                                          equal_nan=True)))
            raise NotPointwiseError(
                f"the model is not pointwise: the same points give different values when they "
                f"are evaluated {where} ({float(got[i]):.6g} instead of {float(alone[i]):.6g} at a probe point). "
                f"{POINTWISE_RULE}")


@lru_cache(maxsize=64)
def _placements(spec: ModelSpec):
    """The four probe evaluations as one compiled program, cached under what the model
    computes (eagerly, every operation would be compiled on its own for each shape)."""
    import jax

    return jax.jit(lambda blocks, p: [spec.evaluate(tuple(blk), p) for blk in blocks])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
