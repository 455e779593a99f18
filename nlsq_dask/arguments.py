"""The arguments of :func:`nlsq_dask.fit` that scipy users know, checked and normalised.

Each function takes what a user may pass (scipy's spellings included) and returns what
the engines use, or raises a ``ValueError``/``TypeError`` that names the argument and
what was expected. scipy's own phrases are kept where code and tests match on them
("Initial guess is outside of provided bounds", "Method 'lm' only works for
unconstrained problems").
"""

from __future__ import annotations

import warnings

import numpy as np

EPS = float(np.finfo(float).eps)
METHODS = ("trf", "dogbox", "lm")
FINITE_DIFFERENCES = ("2-point", "3-point", "cs")
TR_SOLVERS = ("exact", "lsmr")


def prepare_bounds(bounds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lb, ub)`` as float arrays of length ``n`` with ``lb < ub``, from a 2-tuple or a
    :class:`scipy.optimize.Bounds`."""
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):       # scipy.optimize.Bounds
        bounds = (bounds.lb, bounds.ub)
    try:
        lb, ub = bounds
    except (TypeError, ValueError):
        raise ValueError("bounds must be a 2-tuple (lb, ub) of scalars or arrays, or a "
                         "scipy.optimize.Bounds") from None
    lb = np.broadcast_to(np.asarray(lb, dtype=float), (n,)).copy() if np.ndim(lb) == 0 else np.asarray(lb, float)
    ub = np.broadcast_to(np.asarray(ub, dtype=float), (n,)).copy() if np.ndim(ub) == 0 else np.asarray(ub, float)
    if lb.shape != (n,) or ub.shape != (n,):
        raise ValueError(f"bounds must have {n} values each (one per parameter); "
                         f"got lb shape {lb.shape}, ub shape {ub.shape}")
    if np.isnan(lb).any() or np.isnan(ub).any():
        raise ValueError(f"bounds must not contain NaN (use -inf/inf for no bound); got "
                         f"lb={lb.tolist()}, ub={ub.tolist()}")
    if np.any(lb >= ub):
        i = int(np.argmax(lb >= ub))
        raise ValueError(f"each lower bound must be strictly less than its upper bound; "
                         f"parameter {i} has lb={lb[i]} >= ub={ub[i]} (to hold a parameter "
                         "at a value, pass fixed={name: value})")
    return lb, ub


def default_p0(lb, ub) -> np.ndarray:
    """scipy's start without ``p0``: ones, or the middle of two finite bounds, ``lb + 1``
    or ``ub - 1`` for one."""
    p0 = np.ones_like(lb)
    lo, up = np.isfinite(lb), np.isfinite(ub)
    with np.errstate(invalid="ignore"):          # inf - inf where the middle is not used
        p0 = np.where(lo & up, 0.5 * (lb + ub), p0)
    p0 = np.where(lo & ~up, lb + 1, p0)
    return np.where(~lo & up, ub - 1, p0)


def prepare_p0(p0, names: tuple[str, ...], lb, ub) -> np.ndarray:
    """``p0`` as floats (default :func:`default_p0`), checked against the bounds and
    moved strictly inside them as ``least_squares`` does (a start on a bound would stall)."""
    from .solver.trust_region import strictly_feasible_start

    p0 = default_p0(lb, ub) if p0 is None else np.asarray(p0, dtype=float).ravel()
    if not np.all(np.isfinite(p0)):
        raise ValueError(f"p0 must be finite; got {p0.tolist()}")
    outside = (p0 < lb) | (p0 > ub)
    if outside.any():
        bad = [names[i] for i in np.flatnonzero(outside)]
        raise ValueError(f"Initial guess is outside of provided bounds: p0 is outside them for "
                         f"{bad}: p0={p0.tolist()}, lb={lb.tolist()}, ub={ub.tolist()}")
    return strictly_feasible_start(p0, lb, ub)


def check_flag(value, name: str) -> bool:
    """``value`` as a bool; anything but a bool (a string such as ``"no"``) is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")
    return bool(value)


def prepare_x_scale(x_scale, n: int):
    """None for ``'jac'`` (MINPACK-style), else ``n`` positive finite scales."""
    if isinstance(x_scale, str):
        if x_scale != "jac":
            raise ValueError(f"x_scale must be 'jac' or positive numbers; got {x_scale!r}")
        return None
    try:
        scale = np.broadcast_to(np.asarray(x_scale, dtype=float), (n,))
    except (TypeError, ValueError):
        raise ValueError(f"x_scale must be 'jac', a positive number or {n} positive numbers "
                         f"(one per parameter); got {x_scale!r}") from None
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(f"x_scale must be positive and finite; got {np.asarray(x_scale).tolist()}")
    return scale


def check_method(method, lb, ub) -> str:
    """``'trf'`` for scipy's three methods (one algorithm solves them all); unknown names
    and ``'lm'`` with bounds are refused as scipy refuses them."""
    if method is None:
        return "trf"
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)} (all three are solved by the "
                         f"same trust-region reflective algorithm); got {method!r}")
    if method == "lm" and (np.any(np.isfinite(lb)) or np.any(np.isfinite(ub))):
        raise ValueError("Method 'lm' only works for unconstrained problems. Use 'trf' or "
                         "'dogbox' instead.")
    return method


def check_jac(jac):
    """The user's Jacobian callable, or None for autodiff (scipy's finite-difference
    names included: autodiff is exact)."""
    if jac is None or (isinstance(jac, str) and jac in FINITE_DIFFERENCES):
        return None
    if callable(jac):
        return jac
    raise ValueError(f"jac must be a callable jac(x, *params) -> (N, p), None or one of "
                     f"{list(FINITE_DIFFERENCES)}; got {jac!r}")


def check_tr_solver(tr_solver) -> None:
    """scipy's trust-region solvers are accepted (the ``p × p`` subproblem is always
    solved exactly); anything else is refused."""
    if tr_solver is not None and tr_solver not in TR_SOLVERS:
        raise ValueError(f"tr_solver must be one of {list(TR_SOLVERS)} or None; got "
                         f"{tr_solver!r}")


def check_finite_flag(check_finite, nan_policy: str) -> str:
    """The ``nan_policy`` of in-memory data for ``check_finite``: None keeps
    ``nan_policy``; False leaves non-finite points out ('omit') rather than fitting them."""
    if check_finite is None:
        return nan_policy
    return nan_policy if check_flag(check_finite, "check_finite") else "omit"


def merge_maxfev(max_nfev, maxfev):
    """One pass budget from scipy's two names (``least_squares``' and ``leastsq``')."""
    if maxfev is not None and max_nfev is not None and maxfev != max_nfev:
        raise TypeError(f"give max_nfev or maxfev, not both (got {max_nfev} and {maxfev})")
    return max_nfev if max_nfev is not None else maxfev


def check_tolerances(ftol, xtol, gtol, method: str, explicit) -> None:
    """scipy's rules: a tolerance below machine epsilon switches its test off (warned
    for explicit ones), all three below it is an error, and ``'lm'`` needs all three."""
    small = {n: t for n, t in zip(("ftol", "xtol", "gtol"), (ftol, xtol, gtol)) if t < EPS}
    if method == "lm" and small:
        raise ValueError(f"All tolerances must be higher than machine epsilon ({EPS:.2e}) "
                         "for method 'lm'.")
    if len(small) == 3:
        raise ValueError(f"At least one of the tolerances must be higher than machine "
                         f"epsilon ({EPS:.2e}).")
    for name in small:
        if name in explicit:
            warnings.warn(f"Setting `{name}` below the machine epsilon ({EPS:.2e}) "
                          "effectively disables the corresponding termination condition.",
                          UserWarning, stacklevel=3)


def workflow_choice(workflow, preset, config):
    """NLSQ's ``fit(workflow=...)`` as ``(preset, config)``: ``'auto'`` (or None) leaves
    them, a name is a preset (NLSQ's names included), a ``WorkflowConfig`` (or the
    ``Selection`` of ``auto_select_workflow``) is the config."""
    if workflow is None or (isinstance(workflow, str) and workflow.lower() == "auto"):
        return preset, config
    if isinstance(workflow, str):
        if preset is not None and preset != workflow:
            raise TypeError(f"give workflow= or preset=, not both (got workflow={workflow!r}, "
                            f"preset={preset!r})")
        return workflow, config
    from .workflow import Selection, WorkflowConfig

    if isinstance(workflow, Selection):          # auto_select_workflow's answer: its config
        workflow = workflow.config
    if isinstance(workflow, WorkflowConfig):
        if config is not None and config is not workflow:
            raise TypeError("give workflow= or config=, not both: both are a WorkflowConfig")
        return preset, workflow
    raise TypeError(f"workflow must be 'auto', a preset name or a WorkflowConfig; got "
                    f"{type(workflow).__name__}")
