"""Per-point residuals and Jacobian at a fit's solution (``FitResult.fun`` / ``.jac``).

They are as long as the data, so they are computed only when asked: on in-memory data
at once, on dask data as dask arrays block by block (nothing is computed until the user
computes them). Points left out of the fit (NaN or inf in x, y or σ) read as NaN.
"""

from __future__ import annotations

import numpy as np


def _block_terms(spec, params, xs, y, sigma, cov_factor=None, want_jacobian=False,
                 loss="linear", f_scale=1.0):
    """Weighted residuals (N,) or Jacobian (N, p) of one block of numpy arrays; the
    Jacobian is rescaled for a robust loss as ``least_squares``' ``jac`` is (``JᵀJ`` is
    then the Gauss–Newton Hessian of the cost)."""
    from .solver.losses import scale_for_loss
    from .solver.stats import residual_and_jacobian

    import jax.numpy as jnp

    xs = tuple(jnp.asarray(x, jnp.float64) for x in xs)
    y = jnp.asarray(y, jnp.float64)
    params = jnp.asarray(params, jnp.float64)

    def weighted(values):              # (N,) or (p, N)
        if cov_factor is not None:
            from jax.scipy.linalg import solve_triangular

            return solve_triangular(jnp.asarray(cov_factor), values.T, lower=True).T
        return values if sigma is None else values / jnp.asarray(sigma, jnp.float64)

    ok = np.isfinite(np.asarray(y))
    for x in xs:
        ok &= np.isfinite(np.asarray(x))
    if sigma is not None:
        ok &= np.isfinite(np.asarray(sigma))
    if not want_jacobian:
        return np.where(ok, np.asarray(weighted(spec.evaluate(xs, params) - y)), np.nan)
    r, J = residual_and_jacobian(spec, params, xs, y, weighted)
    J = scale_for_loss(r, J, loss, f_scale)[2]
    return np.where(ok[:, None], np.asarray(J).T, np.nan)


class ResidualView:
    """The residuals and Jacobian of a :class:`~nlsq_dask.solver.problem.Problem` at
    ``params`` over ``inputs``, computed (or, for dask data, built as dask arrays) on
    first use."""

    def __init__(self, problem, inputs, params):
        self.spec, self.inputs, self.params = problem.spec, inputs, np.asarray(params, np.float64)
        self.loss, self.f_scale = problem.loss, float(problem.f_scale)
        self._cache: dict[str, object] = {}

    def residuals(self):
        """``(N,)`` weighted residuals."""
        if "fun" not in self._cache:
            self._cache["fun"] = self._compute(False)
        return self._cache["fun"]

    def jacobian(self):
        """``(N, p)`` Jacobian of the weighted residuals (rescaled for a robust loss)."""
        if "jac" not in self._cache:
            self._cache["jac"] = self._compute(True)
        return self._cache["jac"]

    def _compute(self, want_jacobian: bool):
        inp, spec, params = self.inputs, self.spec, self.params
        arrays = [*inp.xs, inp.y] + ([inp.sigma] if inp.sigma is not None else [])
        if not inp.lazy:
            return _block_terms(spec, params, inp.xs, inp.y, inp.sigma, inp.cov_factor,
                                want_jacobian, self.loss, self.f_scale)
        from .engines.partitions import align_chunks

        names = [f"x[{i}]" for i in range(inp.n_inputs)] + ["y", "sigma"][:len(arrays) - inp.n_inputs]
        arrays = align_chunks([_as_dask(a, arrays) for a in arrays], names)
        k, has_sigma = inp.n_inputs, inp.sigma is not None
        loss, f_scale = self.loss, self.f_scale

        def block(*blocks):
            return _block_terms(spec, params, blocks[:k], blocks[k],
                                blocks[k + 1] if has_sigma else None,
                                want_jacobian=want_jacobian, loss=loss, f_scale=f_scale)

        import dask.array as da

        if not want_jacobian:
            return da.map_blocks(block, *arrays, dtype=np.float64)
        return da.map_blocks(block, *arrays, dtype=np.float64, new_axis=1,
                             chunks=(arrays[0].chunks[0], (spec.n_params,)))


def _as_dask(a, arrays):
    """``a`` as a dask array chunked like the first dask array among ``arrays``."""
    import dask.array as da

    if hasattr(a, "dask"):
        return a
    chunks = next(b.chunks[0] for b in arrays if hasattr(b, "dask"))
    return da.from_array(np.asarray(a), chunks=(chunks,))
