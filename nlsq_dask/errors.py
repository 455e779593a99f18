"""The warnings and errors a fit can raise, in one place (no heavy imports).

Every class names a cause a user can act on. The warnings subclass the ones users of
scipy already filter: ``CovarianceWarning`` is a
:class:`scipy.optimize.OptimizeWarning`, as ``curve_fit``'s is (made when first used,
so that importing the package does not import scipy.optimize).
"""

from __future__ import annotations

import threading

_COVARIANCE_DOC = """Some or all parameters are not determined by the data: their covariance is ``inf``.

    ``curve_fit`` issues an :class:`~scipy.optimize.OptimizeWarning` in the same cases,
    so ``warnings.filterwarnings(..., category=OptimizeWarning)`` covers both.
    """
_LOCK = threading.Lock()


def __getattr__(name: str):
    # CovarianceWarning subclasses scipy's OptimizeWarning; importing scipy.optimize
    # costs ~0.2 s, a third of `import nlsq_dask`, so the class is made on first use
    # (once: a lock keeps two threads from making two classes).
    if name != "CovarianceWarning":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _LOCK:
        if name not in globals():
            from scipy.optimize import OptimizeWarning

            globals()[name] = type(name, (OptimizeWarning,),
                                   {"__module__": __name__, "__doc__": _COVARIANCE_DOC,
                                    "__qualname__": name})
    return globals()[name]


class FitWarning(UserWarning):
    """The optimiser stopped without meeting a convergence criterion."""


class InsufficientDataError(ValueError, TypeError):
    """Fewer usable data points than parameters (or none at all).

    A ``ValueError`` (bad data) and, for code written against ``curve_fit``, which
    raises ``TypeError`` when the parameters outnumber the points, a ``TypeError``.
    """


class NotPointwiseError(ValueError):
    """The model is not pointwise in ``x``: its value at a point depends on other points."""


class DataChangedError(RuntimeError):
    """A partition's data differ between two passes of one fit (the source changed)."""


class DataReadError(OSError):
    """Reading a partition of the input data failed; names the array, chunk and path."""


class MissingChunksError(ValueError):
    """Chunks of a zarr-backed input are not in its store (they would read as fill value)."""


class CheckpointError(ValueError):
    """A checkpoint store cannot be created, written, read or resumed; names the path."""
