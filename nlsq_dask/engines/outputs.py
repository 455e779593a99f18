"""What every engine hands back to the API layer."""

from __future__ import annotations

from typing import NamedTuple


class EngineOutput(NamedTuple):
    """What every engine hands back to the API layer (host numpy values)."""

    state: object  # LMState with numpy leaves
    history: list  # per accepted iteration: dict(iteration, cost, params, nfev, elapsed)
    elapsed: float
    extras: dict | None = None  # engine facts for FitResult.extras
