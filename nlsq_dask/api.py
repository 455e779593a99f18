"""``nlsq_dask.fit``: configuration -> selection -> engine -> :class:`FitResult`.

The engines (and with them JAX and dask) are imported inside :func:`fit`, so that
``import nlsq_dask`` stays light and ``nlsq_dask.workflow`` never pulls JAX in.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping

import numpy as np

from .arguments import (check_finite_flag, check_flag, check_jac, check_method, check_tolerances,
                        check_tr_solver, default_p0, merge_maxfev, prepare_bounds,
                        prepare_p0, prepare_x_scale, workflow_choice)
from .errors import FitWarning
from .parameters import FixedParameters, named_bounds, named_p0
from .result import FitResult
from .workflow import (DatasetProfile, ResourceSnapshot, WorkflowSelector, WorkflowTier,
                       resolve_config)
from .workflow.config import CHECKPOINT_FIELDS, CHECKPOINT_RUN_OPTIONS


# Default pass budget per parameter: a safety net, not a stopping rule (converging fits
# stop on their tolerances long before). NIST's MGH17 and Bennett5 start 1 need ~190 and
# ~460 passes per parameter, beyond scipy's 100.
DEFAULT_NFEV_PER_PARAM = 1000

#: fit()'s checkpoint keywords (``**engine_options``)
ENGINE_OPTIONS = CHECKPOINT_FIELDS + CHECKPOINT_RUN_OPTIONS


def active_client(client=None):
    """The explicit ``client``, else the active distributed Client, else None.

    Never starts a cluster: without a Client dask's configured scheduler is used.
    """
    if client is not None:
        return client
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client
    try:
        return default_client()
    except ValueError:
        return None


def fit(model, x, y, p0=None, sigma=None, absolute_sigma=False, bounds=(-np.inf, np.inf), *,
        loss=None, f_scale=None, preset=None, config=None, goal=None, tier=None,
        param_names=None, ftol=None, xtol=None, gtol=None, max_nfev=None, maxfev=None,
        method=None, jac=None, check_finite=None, tr_solver=None, x_scale="jac",
        reduction=None, nan_policy="raise", missing_chunks="raise", client=None, chunk_size=None,
        memory_limit_gb=None, split_every=None, progress=False, callback=None, yaml_path=None,
        fixed=None, workflow=None, **engine_options) -> FitResult:
    """Fit ``model(x, *params)`` to ``y`` by nonlinear least squares.

    Parameters
    ----------
    model : callable
        ``model(x, *params)`` written with ``jax.numpy`` and *pointwise* in ``x``: its
        value at a point may depend only on that point's ``x`` and the parameters, since
        it is evaluated on blocks of points. A model that reduces over ``x``
        (``jnp.mean(x)``, ``jnp.sum``, ``x[0]``) or closes over an array with one value per
        point is refused with :class:`~nlsq_dask.NotPointwiseError`; pass such arrays as
        extra rows of ``x`` (``np.stack([t, target])``) or as a tuple.
    x : array_like of shape (N,), (k, N) or (..., N), or tuple of arrays
        Independent variable(s): numpy, dask or xarray. The last axis is the point axis;
        the model receives ``x`` in the shape given.
    y : 1-D array_like or scalar
        Observations (numpy, dask or xarray); a scalar is the same at every point.
    p0 : array_like or dict, optional
        Initial parameters (default: scipy's: ones, or inside finite bounds the middle,
        ``lb + 1`` or ``ub - 1``); a dict ``{name: value}`` gives them by name, with the
        default for those it leaves out.
    sigma : scalar, 1-D or 2-D array_like, optional
        Standard deviations of ``y`` (residuals are ``(model - y) / sigma``), or, 2-D,
        the covariance matrix of ``y`` as in ``curve_fit``: residuals are whitened by its
        Cholesky factor (a full matrix couples the points, so it needs in-memory data; a
        diagonal one is the same as its standard deviations, on every tier).
    absolute_sigma : bool
        As in ``curve_fit``: if False, ``pcov`` is scaled by the reduced χ².
    bounds : 2-tuple of array_like, scipy.optimize.Bounds, or dict
        Lower and upper bounds on the parameters; a dict ``{name: (lower, upper)}`` gives
        them by name (xarray's ``curvefit`` form), unbounded for those it leaves out.
    loss, f_scale : str or callable, float, optional
        Robust loss (``linear``, ``soft_l1``, ``huber``, ``cauchy``, ``arctan``, or a
        callable ``rho(z) -> (3, N)`` written with ``jax.numpy`` as
        ``scipy.optimize.least_squares`` takes it) and its soft margin, with scipy's
        definitions.
    preset, config, goal, tier : optional
        Workflow configuration (see :mod:`nlsq_dask.workflow`). Precedence: explicit
        arguments > ``NLSQ_*`` environment > ``nlsq.yaml`` > preset > defaults.
    param_names : sequence of str, optional
        Parameter names (default: from the model's signature).
    ftol, xtol, gtol : float, optional
        Termination tolerances with scipy's meanings (default: adaptive by size). 0
        switches that test off (with a warning, as scipy); all three 0 is an error.
    max_nfev, maxfev : int, optional
        Maximum number of data passes, i.e. function evaluations (default
        ``1000 * n_params``; scipy's is 100 per parameter, too few for NIST's hardest
        starts, which need up to ~460 per parameter). ``maxfev`` is ``leastsq``'s name.
    method : {'trf', 'dogbox', 'lm'}, optional
        Accepted for scipy code; all three are solved by the same trust-region
        reflective algorithm (``'trf'``). ``'lm'`` with bounds is refused, as scipy does.
    jac : callable or {'2-point', '3-point', 'cs'}, optional
        ``jac(x, *params) -> (N, p)`` written with ``jax.numpy`` and pointwise, used
        instead of forward-mode autodiff on every tier. scipy's finite-difference
        names are accepted and mean autodiff, which is exact.
    check_finite : bool, optional
        True (default): in-memory data with NaN or inf raise (``nan_policy``); dask
        data, which are never scanned up front, raise in their first pass. False:
        non-finite points are left out (never fitted as garbage).
    tr_solver : {'exact', 'lsmr'}, optional
        Accepted for scipy code: the trust-region subproblem is ``p × p`` and always
        solved exactly.
    x_scale : 'jac' or array_like
        Parameter scaling (default: MINPACK-style Jacobian column norms).
    reduction : {'normal', 'qr'}, optional
        Statistics as normal equations or TSQR factors.
    nan_policy : {'raise', 'omit'}
        In-memory data with NaN/inf: raise, or skip those points. Dask data are
        never scanned up front; their non-finite points are always skipped, and the
        first pass raises if fewer usable points than parameters remain, or if a
        ``sigma`` is zero or negative.
    missing_chunks : {'raise', 'fill'}
        Zarr-backed inputs whose store lacks chunks (listed before the first pass; no
        data read): raise (default), or read them as the fill value, as zarr does
        (right when they were left out for holding only the fill value).
    client : distributed.Client, optional
        Client to run on (default: the active one; without one, dask's
        configured scheduler). ``fit`` never starts a cluster.
    chunk_size, memory_limit_gb, split_every : optional
        Partition size, memory cap for the selector, reduction fan-in.
    progress : bool
        Write to stderr the tier and why, then a line per pass; within a dask pass the
        partitions done and, once the time per partition is known, an ETA. The first
        pass, which compiles the kernels, is labelled so. (Every pass is also logged to
        the ``nlsq_dask`` logger at INFO level.)
    callback : callable, optional
        Called after every pass, as ``scipy.optimize.least_squares`` calls it: with a
        read-only :class:`~nlsq_dask.engines.progress.Iteration` (``x``, ``cost``,
        ``nfev``, ``nit``, ``step_norm``, ``accepted``, ``done``, ``elapsed``) if its
        parameter is named ``intermediate_result``, else with ``x``. Returning True or
        raising ``StopIteration`` stops the fit: the result is the current iterate with
        status -2 (``success`` False). Multi-start fits call it for the passes of the
        winning start's full-data fit (the starts themselves run batched).
    yaml_path : path, optional
        ``nlsq.yaml`` to read (default ``./nlsq.yaml`` when present).
    workflow : str or WorkflowConfig, optional
        NLSQ's spelling: ``'auto'`` (the default: the selector decides), a preset name
        (the spec's seven or NLSQ's own names and aliases, as ``preset=``), a
        ``WorkflowConfig`` (as ``config=``) or the ``Selection`` of
        ``auto_select_workflow`` (its config).
    fixed : dict or list of str, optional
        Parameters held fixed: ``{name: value}``, or names whose values ``p0`` gives. They
        leave the solve (the model is called with their values); in the result their
        ``popt`` is that value and their rows and columns of ``pcov`` (and their ``grad``
        and ``active_mask`` entries) are 0, and ``dof`` counts the free parameters only.
        ``jac``, ``fun``'s Jacobian and ``history`` stay those of the free parameters.
    **engine_options
        Checkpoint options for the dask tiers (``checkpoint_dir``,
        ``enable_checkpoints``, ``resume``, ``checkpoint_fresh``, ``checkpoint_name``).

    Returns
    -------
    FitResult
        Unpacks as ``popt, pcov``. Parameters the data do not determine have ``inf``
        covariance rows and columns, with a :class:`~nlsq_dask.CovarianceWarning` (an
        ``OptimizeWarning``).

    Raises
    ------
    NotPointwiseError
        The model is not pointwise (checked before the first pass).
    InsufficientDataError
        Fewer usable points than parameters (for lazy data, in the first pass).
    MissingChunksError, DataReadError, DataChangedError
        A zarr-backed input lacks chunks, cannot be read, or changes between passes.
    ValueError, TypeError
        Any other bad argument (bounds with NaN, ``sigma <= 0``, a non-bool
        ``absolute_sigma``, ...), with what to change.
    """
    from .engines.data import prepare_inputs
    from .engines.driver import FitContext, run_single
    from .engines.multistart import run_starts, run_validation
    from .engines.invariants import require_points
    from .engines.progress import Progress
    from .engines.sources import guard_inputs
    from .residuals import ResidualView
    from .solver import ModelSpec, check_loss, make_options
    from .solver.compile_cache import enable_compilation_cache
    from .solver.pointwise import check_model
    from .solver.problem import Problem
    from .solver.samplers import draw_starts

    started = time.perf_counter()
    if not callable(model):
        raise TypeError(f"model must be callable as model(x, *params); got {type(model).__name__}")
    absolute_sigma = check_flag(absolute_sigma, "absolute_sigma")
    inputs = prepare_inputs(x, y, sigma, check_finite_flag(check_finite, nan_policy),
                            require_finite=check_finite is True)
    inputs = guard_inputs(inputs, missing_chunks)
    all_names = model_parameter_names(model, param_names, p0)
    lb, ub = prepare_bounds(named_bounds(bounds, all_names), len(all_names))
    held = FixedParameters.build(fixed, all_names, p0)
    held.check_bounds(lb, ub)
    start = named_p0(p0, all_names, default_p0(lb, ub))
    if held:
        start = held.expand(held.free(default_p0(lb, ub) if start is None else start))
    names, model_all, model = all_names, model, held.model(model)
    if not inputs.lazy:  # lazy data are counted in their first pass
        require_points(inputs.n_points, len(held.free_names))
    method = check_method(method, lb, ub)
    jac = held.jacobian(check_jac(jac))
    check_tr_solver(tr_solver)
    max_nfev = merge_maxfev(max_nfev, maxfev)
    loss = check_loss(loss) if callable(loss) else loss      # names: checked by the config
    p0_all = prepare_p0(start, names, lb, ub)
    names, p0, lb, ub = held.free_names, held.free(p0_all), held.free(lb), held.free(ub)

    overrides = dict(goal=goal, tier=tier, loss=loss, f_scale=f_scale, ftol=ftol, xtol=xtol,
                     gtol=gtol, max_nfev=max_nfev, reduction=reduction, chunk_size=chunk_size,
                     memory_limit_gb=memory_limit_gb, split_every=split_every)
    unknown = set(engine_options) - set(ENGINE_OPTIONS)
    if unknown:
        raise TypeError(f"fit() got unexpected keyword argument(s) {sorted(unknown)}; "
                        f"valid extra options are {list(ENGINE_OPTIONS)}")
    for key in CHECKPOINT_FIELDS:
        if key in engine_options:
            overrides[key] = engine_options.pop(key)
    preset, config = workflow_choice(workflow, preset, config)
    cfg = resolve_config(preset=preset, config=config, overrides=overrides, yaml_path=yaml_path)
    enable_compilation_cache(cfg.compilation_cache)
    check_loss(cfg.loss)

    client = active_client(client)
    resources = ResourceSnapshot.detect(client=client, memory_limit_gb=cfg.memory_limit_gb)
    profile = DatasetProfile(n_points=inputs.n_points, n_params=len(names),
                             n_inputs=inputs.n_inputs, itemsize=inputs.itemsize,
                             has_sigma=inputs.sigma is not None,
                             partition_points=inputs.partition_points,
                             n_partitions=inputs.n_partitions, lazy=inputs.lazy)
    selection = WorkflowSelector().select(profile, resources, cfg)
    c = selection.config
    check_tolerances(c.ftol, c.xtol, c.gtol, method,
                     explicit={n for n, v in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol))
                               if v is not None})
    if inputs.cov_factor is not None and selection.tier is not WorkflowTier.STANDARD:
        raise ValueError(f"a full covariance matrix sigma couples every point with every other, "
                         f"so it is fitted in memory (tier 'standard'), not "
                         f"{selection.tier.value!r}: leave the tier to the selector and "
                         "checkpoints off, or pass 1-D standard deviations")

    spec = ModelSpec(model, names, inputs.x_form, inputs.n_inputs, x_lead=inputs.x_lead, jac=jac)
    check_model(spec, p0, inputs.n_points)
    x_scale = prepare_x_scale(x_scale, len(all_names))
    x_scale = None if x_scale is None else held.free(x_scale)
    n_max = int(c.max_nfev) if c.max_nfev is not None else DEFAULT_NFEV_PER_PARAM * len(names)
    opts = make_options(lb, ub, c.ftol, c.xtol, c.gtol, n_max, x_scale)
    watch = Progress(check_flag(progress, "progress"), callback,
                     expand=held.expand if held else None)
    watch.announce(selection)
    ctx = FitContext(Problem.from_config(spec, c), inputs, selection, opts, lb, ub, n_max,
                     client=client, progress=watch, engine_options=engine_options)
    report = None
    if c.enable_multistart and c.n_starts > 1:
        starts = draw_starts(p0, lb, ub, c.n_starts, sampler=c.sampler,
                             center_on_p0=c.center_on_p0, scale_factor=c.scale_factor)
        out, report = run_starts(ctx, starts)
    else:
        out = run_single(ctx, p0)
    result = build_result(out, names, selection, ctx.problem, absolute_sigma, lb, ub)
    if report is not None:
        result.extras["multistart"] = report
        result.equivalent_passes = float(report["data_passes"])
        result.n_passes = int(report["passes"])
    if c.validation_passes > 0:
        result.extras["validation"] = run_validation(ctx, result.popt, result.perr,
                                                     c.validation_passes)
    residuals = ResidualView(ctx.problem, inputs, result.popt)
    if held:
        result = with_fixed(result, held, lb, ub)
    result.p0 = p0_all
    result.elapsed = time.perf_counter() - started
    # For result.plot(): references to the caller's model and (lazy) data, not copies;
    # result.fun / .jac are computed from them when asked.
    result._model, result._x, result._y = model_all, x, y
    result._residuals = residuals
    return result


def model_parameter_names(model, param_names, p0) -> tuple[str, ...]:
    """The model's parameter names: ``param_names``, else its signature, else (a model
    taking ``*params``) the keys of a dict ``p0`` or ``p0, p1, ...``."""
    from .solver import infer_param_names

    if isinstance(p0, Mapping):
        try:
            return infer_param_names(model, param_names, None)
        except TypeError:                      # *params: the dict names them
            return tuple(str(k) for k in p0)
    return infer_param_names(model, param_names, None if p0 is None else int(np.size(p0)))


def with_fixed(result: FitResult, held: FixedParameters, lb, ub) -> FitResult:
    """A result over the free parameters expanded to every parameter (see ``fixed``)."""
    result.popt = held.expand(result.popt)
    result.pcov = held.expand_matrix(result.pcov)
    result.param_names = held.names
    result.grad = held.expand(result.grad, fill=0.0)
    result.active_mask = held.expand(result.active_mask, fill=0).astype(int)
    result.fixed = dict(held.values)
    return result


def build_result(out, names, selection, problem, absolute_sigma: bool, lb, ub) -> FitResult:
    """Covariance and bookkeeping from an engine's final state."""
    from .solver import Status, covariance
    from .solver.trust_region import active_constraints

    state = out.state
    status = Status(int(state.status))
    if status is Status.NOT_FINITE:
        raise ValueError(status.message)
    c = selection.config
    subsets = (out.extras or {}).get("subsets") or {}
    n_used = int(round(float(state.n)))
    pcov = covariance(state.H, state.R11 if problem.stats.square_root else None,
                      n_points=n_used, cost=float(state.cost), absolute_sigma=absolute_sigma,
                      param_names=names)
    if status is Status.MAX_NFEV:
        warnings.warn(f"{status.message} The result is the best point found; raise max_nfev "
                      "or loosen the tolerances.", FitWarning, stacklevel=3)
    return FitResult(popt=np.asarray(state.x, dtype=float), pcov=pcov, param_names=tuple(names),
                     cost=float(state.cost), n_points_used=n_used, nfev=int(state.nfev),
                     nit=int(state.nit), status=status, message=status.message,
                     tier=selection.tier, config=c, selection=selection, history=out.history,
                     elapsed=out.elapsed, extras=dict(out.extras or {}),
                     grad=np.asarray(state.g, dtype=float), optimality=float(state.g_norm),
                     active_mask=active_constraints(np.asarray(state.x), lb, ub, c.xtol),
                     n_passes=int(state.nfev) + int(subsets.get("passes", 0)),
                     equivalent_passes=float(int(state.nfev)
                                             + subsets.get("equivalent_passes", 0.0)))
