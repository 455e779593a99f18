"""What a person and their code see of a running fit: the progress line and ``callback=``.

:class:`Progress` is built by :func:`nlsq_dask.fit` from ``progress=`` and ``callback=``
and handed to the engines; for each start it makes the hooks of the LM loop
(:class:`ProgressLine`, :class:`CallbackHook`). A dask pass reports its partitions as
they finish (:meth:`ProgressLine.partition_done`), so a long pass shows where it is.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

from .hooks import Hook

log = logging.getLogger("nlsq_dask")

#: seconds between updates of the live line (a terminal) and of the partition lines
#: written to a log file or a notebook cell
TTY_REFRESH = 0.25
LOG_REFRESH = 10.0


class Iteration(NamedTuple):
    """What ``callback(intermediate_result)`` sees after each pass (read-only copies).

    Attributes
    ----------
    x : numpy.ndarray
        The current iterate (every parameter, fixed ones included).
    cost : float
        ``½ Σ ρ(r²)`` at ``x``.
    nfev, nit : int
        Passes and accepted iterations so far.
    step_norm : float
        Length of the last accepted step (0 after a rejected trial).
    accepted : bool
        Whether this pass's trial was accepted.
    done : bool
        Whether the fit has finished (a stop request is then ignored).
    elapsed : float
        Seconds since the fit's loop started.
    """

    x: np.ndarray
    cost: float
    nfev: int
    nit: int
    step_norm: float
    accepted: bool
    done: bool
    elapsed: float


class Progress:
    """``fit()``'s ``progress`` and ``callback`` for the engines.

    Parameters
    ----------
    show : bool
        Write the tier at the start and a progress line per pass (with partitions and an
        ETA within dask passes) to ``stream``.
    callback : callable, optional
        Called after every pass as scipy's ``least_squares`` calls it: with an
        :class:`Iteration` when its one parameter is named ``intermediate_result``, else
        with ``x``. Returning True or raising ``StopIteration`` stops the fit (status -2).
    expand : callable, optional
        Maps the solver's parameters to every parameter (fixed ones held out of the solve).
    stream : file, optional
        Default ``sys.stderr``.
    """

    def __init__(self, show: bool = False, callback: Callable | None = None, expand=None,
                 stream=None):
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable; got {type(callback).__name__}")
        self.show, self.callback = bool(show), callback
        self.expand = expand or (lambda x: x)
        self.stream = stream if stream is not None else sys.stderr

    def announce(self, selection) -> None:
        """The tier and why, before the first pass."""
        if not self.show:
            return
        reason = selection.reasons[0] if selection.reasons else ""
        profile = selection.profile
        parts = profile.n_partitions           # the lazy data's own chunks, unless rechunked
        if not profile.lazy or selection.config.chunk_size:
            parts = -(-profile.n_points // selection.partition_points)
        where = ("in memory" if selection.tier.value == "standard"
                 else f"{parts:,} partition{'s' if parts != 1 else ''} of "
                      f"~{selection.partition_points:,} points")
        self.stream.write(f"nlsq_dask: tier {selection.tier.value} ({where})"
                          + (f": {reason}" if reason else "") + "\n")
        self.stream.flush()

    def hooks(self, n_points: int, n_partitions: int, prior: float = 0.0) -> list[Hook]:
        """The loop's hooks for one start: its progress line and, if any, the callback.
        ``prior``: full-pass equivalents read before (subset passes), counted on."""
        hooks: list[Hook] = [ProgressLine(self.show, n_points, n_partitions, self.stream,
                                          prior=prior)]
        if self.callback is not None:
            hooks.append(CallbackHook(self.callback, self.expand))
        return hooks

    def subset_hooks(self, n_points: int, n_partitions: int, fraction: float,
                     prior: float) -> list[Hook]:
        """The progress line of passes over a subset of ``n_partitions`` partitions,
        ``fraction`` of the data (the callback is told only of full-data iterations)."""
        return [ProgressLine(self.show, n_points, n_partitions, self.stream, prior=prior,
                             fraction=fraction)]


def _eta(seconds: float) -> str:
    if seconds < 1:
        return "<1 s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes
                                                     else f"{secs} s")


class ProgressLine(Hook):
    """One line per pass to the log; with ``show`` also to ``stream``: live (``\\r``) on a
    terminal, a line per pass elsewhere. Within a pass of several partitions it shows
    the partitions done and, once the time per partition is known, an ETA for the pass.
    The first pass, which compiles the kernels, is labelled so."""

    def __init__(self, show: bool, n_points: int, n_partitions: int = 1, stream=None,
                 prior: float = 0.0, fraction: float = 1.0):
        self.show, self.n_points, self.n_partitions = show, n_points, n_partitions
        #: full-pass equivalents read before this line's passes, and each pass's share
        self.prior, self.fraction = prior, fraction
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.passes, self.per_partition = 0, None
        self.first_done_at, self.last_write = None, 0.0

    def _write(self, msg: str) -> None:
        if self.tty:
            self.stream.write("\r" + msg.ljust(100))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()
        self.last_write = time.perf_counter()

    def partition_done(self, done: int, total: int) -> None:
        """Called by a dask pass as partitions finish (``done`` of ``total``)."""
        now = time.perf_counter()
        if done == 1:
            self.first_done_at = now
        if not self.show or done >= total or now - self.last_write < (
                TTY_REFRESH if self.tty else LOG_REFRESH):
            return
        per = self.per_partition
        if per is None and done >= 2:            # this pass's rate after its first partition
            per = (now - self.first_done_at) / (done - 1)
        eta = f" | ETA {_eta((total - done) * per)}" if per is not None else ""
        label = " (compiling)" if self.passes == 0 and self.prior == 0 else ""
        self._write(f"pass {self.passes + 1:3d}{label} | {done:,}/{total:,} partitions{eta}")

    def after_pass(self, state, head, seconds):
        rate = self.n_points / seconds if seconds > 0 else float("inf")
        label = " (incl. compile)" if self.passes == 0 and self.prior == 0 else ""
        where = (f"subset {100 * self.fraction:.3g}% " if self.fraction < 1 else "")
        msg = (f"{where}pass {int(np.max(head.nfev)):3d}{label} | iter {int(np.max(head.nit)):3d} | "
               f"cost {float(np.min(head.cost)):.6e} | step {float(np.max(head.last_step_norm)):.3e}"
               f" | {seconds:.3g} s | {rate / 1e6:8.2f} Mpts/s")
        if self.fraction < 1 or self.prior > 0:
            read = self.prior + self.fraction * (self.passes + 1)
            msg += f" | {read:.2f} full passes read"
        log.info(msg)
        if self.passes > 0 and self.n_partitions > 1:
            self.per_partition = seconds / self.n_partitions
        self.passes += 1
        if self.show:
            self._write(msg)
        return False

    def close(self, state):
        if self.show and self.tty:
            self.stream.write("\n")
            self.stream.flush()


class CallbackHook(Hook):
    """Calls the user's callback after every pass; True (or ``StopIteration``) stops."""

    def __init__(self, callback: Callable, expand):
        self.callback, self.expand = callback, expand
        self.wants_result = _takes_intermediate_result(callback)
        self.t0, self.stopped = time.perf_counter(), False

    def after_pass(self, state, head, seconds):
        x = np.array(self.expand(np.asarray(state.x)), dtype=float)
        x.flags.writeable = False
        arg = Iteration(x, float(head.cost), int(head.nfev), int(head.nit),
                        float(head.last_step_norm), bool(head.accepted), bool(head.done),
                        time.perf_counter() - self.t0) if self.wants_result else x
        try:
            stop = bool(self.callback(arg))
        except StopIteration:
            stop = True
        self.stopped = stop and not bool(head.done)
        return self.stopped


def _takes_intermediate_result(callback) -> bool:
    """scipy's rule: ``callback(intermediate_result)`` by that parameter name, else ``callback(x)``."""
    try:
        return "intermediate_result" in inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return False
