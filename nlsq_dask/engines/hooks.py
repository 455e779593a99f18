"""What the LM loop (:func:`~nlsq_dask.engines.iterate.iterate`) hands its hooks after
every pass: the :class:`Head` of the state, read once, and the :class:`Hook` protocol."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Head(NamedTuple):
    """What the host loop and its hooks read of a state after each pass (one transfer)."""

    done: np.ndarray
    status: np.ndarray
    accepted: np.ndarray
    nit: np.ndarray
    nfev: np.ndarray
    cost: np.ndarray
    last_step_norm: np.ndarray

    @classmethod
    def of(cls, state) -> "Head":
        import jax

        return cls(*jax.device_get(tuple(getattr(state, f) for f in cls._fields)))


class Hook:
    """What the LM loop calls after every pass (the start's included).

    ``after_pass(state, head, seconds)`` sees the state on the device, its
    :class:`Head` on the host and the pass's wall time; returning True stops the loop.
    ``close(state)`` runs once at the end with the final (host) state.
    """

    def after_pass(self, state, head: Head, seconds: float) -> bool:
        return False

    def close(self, state) -> None:
        pass
