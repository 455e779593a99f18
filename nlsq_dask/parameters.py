"""Parameters by name: ``p0`` and ``bounds`` as dicts, and parameters held fixed.

A fixed parameter leaves the solve: the model the solver sees takes only the free
parameters (:meth:`FixedParameters.model`), and the results are expanded back to every
parameter afterwards, with the fixed value in ``popt`` and zeros in its covariance row
and column (it has no uncertainty: it was not estimated).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


def check_names(given, names: tuple[str, ...], what: str) -> None:
    """Refuse keys of ``given`` that are not parameter names, naming the valid ones."""
    unknown = [k for k in given if k not in names]
    if unknown:
        raise ValueError(f"{what} names {unknown}, which are not parameters of the model; "
                         f"its parameters are {list(names)}")


def named_bounds(bounds, names: tuple[str, ...]):
    """``bounds`` as scipy's ``(lb, ub)``: a dict ``{name: (lower, upper)}`` becomes two
    arrays with ``-inf``/``inf`` for the parameters it leaves out; anything else is
    returned unchanged."""
    if not isinstance(bounds, Mapping):
        return bounds
    check_names(bounds, names, "bounds")
    lb, ub = np.full(len(names), -np.inf), np.full(len(names), np.inf)
    for i, name in enumerate(names):
        if name in bounds:
            try:
                lb[i], ub[i] = bounds[name]
            except (TypeError, ValueError):
                raise ValueError(f"bounds[{name!r}] must be a pair (lower, upper) of numbers; "
                                 f"got {bounds[name]!r}") from None
    return lb, ub


def named_p0(p0, names: tuple[str, ...], default: np.ndarray):
    """``p0`` as an array: a dict ``{name: value}`` takes ``default`` (scipy's start) for
    the parameters it leaves out; anything else is returned unchanged."""
    if not isinstance(p0, Mapping):
        return p0
    check_names(p0, names, "p0")
    return np.array([float(p0[n]) if n in p0 else default[i] for i, n in enumerate(names)])


@dataclass(frozen=True)
class FixedParameters:
    """Which parameters are held fixed, and at what values.

    Parameters
    ----------
    names : tuple of str
        Every parameter of the model, in order.
    values : dict
        ``{name: value}`` of the fixed ones.
    """

    names: tuple[str, ...]
    values: dict

    @classmethod
    def build(cls, fixed, names: tuple[str, ...], p0=None) -> FixedParameters:
        """From ``fit()``'s ``fixed``: a dict ``{name: value}``, or names whose values are
        taken from ``p0`` (a dict or an array in the order of ``names``)."""
        if fixed is None:
            return cls(tuple(names), {})
        if isinstance(fixed, str) or not isinstance(fixed, (Mapping, list, tuple, set)):
            raise TypeError(f"fixed must be a dict {{name: value}} or a list of parameter "
                            f"names; got {fixed!r}")
        check_names(fixed, names, "fixed")
        if isinstance(fixed, Mapping):
            values = dict(fixed)
        else:
            if p0 is None:
                raise ValueError(f"fixed={list(fixed)} names parameters without values: give "
                                 "p0 for them, or fixed as a dict {name: value}")
            start = p0 if isinstance(p0, Mapping) else dict(zip(names, np.ravel(p0)))
            missing = [n for n in fixed if n not in start]
            if missing:
                raise ValueError(f"fixed names {missing}, which p0 gives no value for")
            values = {n: start[n] for n in fixed}
        out = {}
        for name, value in values.items():
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"fixed[{name!r}] must be a number; got {value!r}") from None
            if not np.isfinite(out[name]):
                raise ValueError(f"fixed[{name!r}] must be finite; got {value!r}")
        if len(out) == len(names):
            raise ValueError(f"fixed holds every parameter ({list(names)}): nothing is left to fit")
        return cls(tuple(names), out)

    def __bool__(self) -> bool:
        return bool(self.values)

    @property
    def free_index(self) -> np.ndarray:
        """Positions of the free parameters."""
        return np.array([i for i, n in enumerate(self.names) if n not in self.values], int)

    @property
    def free_names(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n not in self.values)

    def free(self, values):
        """The free entries of a per-parameter array (or of a per-parameter dict)."""
        if isinstance(values, Mapping):
            return {k: v for k, v in values.items() if k not in self.values}
        a = np.asarray(values)
        return a if a.ndim == 0 else a[..., self.free_index]

    def check_bounds(self, lb, ub) -> None:
        """A fixed value must lie within its parameter's bounds."""
        for i, name in enumerate(self.names):
            if name in self.values and not lb[i] <= self.values[name] <= ub[i]:
                raise ValueError(f"fixed[{name!r}] = {self.values[name]} is outside its bounds "
                                 f"[{lb[i]}, {ub[i]}]")

    def model(self, func):
        """``func(x, *all_params)`` as a function of the free parameters only."""
        if not self:
            return func
        names, values = self.names, self.values

        def free_model(x, *free):
            it = iter(free)
            return func(x, *[values[n] if n in values else next(it) for n in names])

        return free_model

    def jacobian(self, jac):
        """A user's ``jac(x, *all_params) -> (N, p)`` as the free parameters' columns."""
        if not self or jac is None:
            return jac
        model, keep = self.model(jac), self.free_index

        def free_jac(x, *free):
            return model(x, *free)[..., keep]

        return free_jac

    def expand(self, free_values, fill=None):
        """A per-free-parameter array ``(..., n_free)`` as ``(..., n)``: the fixed
        parameters get their values (or ``fill``)."""
        free_values = np.asarray(free_values, dtype=float)
        out = np.empty(free_values.shape[:-1] + (len(self.names),))
        for i, name in enumerate(self.names):
            if name in self.values:
                out[..., i] = self.values[name] if fill is None else fill
        out[..., self.free_index] = free_values
        return out

    def expand_matrix(self, free_matrix):
        """A ``(n_free, n_free)`` matrix as ``(n, n)``, zero in the fixed rows and columns."""
        out = np.zeros((len(self.names),) * 2)
        keep = self.free_index
        out[np.ix_(keep, keep)] = free_matrix
        return out
