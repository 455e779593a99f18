"""Checkpointing of a dask fit: which store, what fingerprint, and state <-> record.

The store itself (:mod:`~nlsq_dask.engines.checkpoint`) knows nothing about the
solver; this module maps an :class:`~nlsq_dask.solver.LMState` and the history to
numeric arrays and JSON scalars, and names the pass records so that stored
partitions are reused only for exactly the same trial point.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from ..errors import CheckpointError
from .checkpoint import CheckpointStore, fingerprint_problem
from .sources import stored_files_digest

DEFAULT_DIR = "./nlsq_checkpoints"


def _array_token(a) -> str:
    if hasattr(a, "dask"):
        return a.name
    return hashlib.sha1(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


def problem_fingerprint(spec, inputs, arrays, lb, ub, config, p0) -> dict:
    """What must match for a stored fit to be resumed."""
    sources = [*inputs.xs, inputs.y] + ([inputs.sigma] if inputs.sigma is not None else [])
    names = [f"x[{i}]" for i in range(inputs.n_inputs)] + ["y"] + (
        ["sigma"] if inputs.sigma is not None else [])
    data = [dict(name=n, shape=[int(s) for s in src.shape], chunks=[int(c) for c in arr.chunks[0]],
                 dtype=str(src.dtype), token=_array_token(src), files=stored_files_digest(src))
            for n, src, arr in zip(names, sources, arrays)]
    return fingerprint_problem(
        model=spec.identity, param_names=list(spec.param_names), data=data, bounds=(lb, ub),
        loss=config.loss, extra=dict(x_form=spec.x_form, reduction=config.reduction,
                                     f_scale=float(config.f_scale), p0=np.asarray(p0).tolist()))


class FitCheckpoint:
    """A fit's checkpoint store plus the mapping of solver state to records."""

    def __init__(self, store: CheckpointStore, frequency: int):
        self.store, self.frequency = store, int(frequency)
        #: ``[ftol, xtol, gtol]`` of this run, stored with every state
        self.tolerances: list[float] | None = None
        #: the tolerances the loaded state was computed with (None: not recorded)
        self.stored_tolerances: list[float] | None = None
        self._summaries_saved = False

    @classmethod
    def open(cls, spec, inputs, arrays, lb, ub, config, p0, *, name=None, resume=True,
             fresh=False) -> "FitCheckpoint":
        """Open (or create) the store; fails before any pass if the directory is unusable."""
        name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", getattr(spec.func, "__name__", "model"))
        fp = problem_fingerprint(spec, inputs, arrays, lb, ub, config, p0)
        store = CheckpointStore.open(config.checkpoint_dir or DEFAULT_DIR, name, fp,
                                     resume=resume, fresh=fresh)
        try:
            store.save_config(config.to_dict())
        except BaseException:
            store.close()
            raise
        return cls(store, config.checkpoint_frequency)

    @property
    def path(self) -> str:
        return str(self.store.path)

    def has_state(self) -> bool:
        """Whether the store holds a fit's state to resume."""
        return bool(self.store.resumed) and self.store.load_state() is not None

    def load(self, state_type):
        """``(state, history)`` of the stored fit, or None if it holds none."""
        loaded = self.store.load_state() if self.store.resumed else None
        if loaded is None:
            return None
        _, arrays, scalars = loaded
        self.stored_tolerances = scalars.get("tolerances")
        flat, fields, offset = arrays["state"], {}, 0
        layout = scalars.get("layout") or []
        names = [entry[0] for entry in layout]
        if names != list(state_type._fields) or any(
                np.dtype(dtype).kind not in "biuf" for _, _, dtype in layout) or \
                sum(int(np.prod(shape)) for _, shape, _ in layout) != flat.size:
            raise CheckpointError(
                f"checkpoint {self.path}: its state's layout {names} does not describe this "
                f"version's solver state {list(state_type._fields)}; pass "
                "checkpoint_fresh=True to start over")
        for name, shape, dtype in layout:
            size = int(np.prod(shape))
            fields[name] = flat[offset:offset + size].reshape(shape).astype(dtype)
            offset += size
        return state_type(**fields), scalars["history"]

    def seed_ledger(self, ledger) -> None:
        """Give ``ledger`` the data summaries stored when the partitions were first
        computed, so the first pass after a resume catches data changed since."""
        stored = self.store.load_summaries() if self.store.resumed else None
        if stored is not None:
            ledger.seed(stored, f"checkpoint {self.path}")

    def save_summaries(self, ledger) -> None:
        """Store the ledger's summaries once it has seen every partition (once a store)."""
        if ledger.counted and ledger.origin is None and not self._summaries_saved:
            self.store.save_summaries(ledger.first)
            self._summaries_saved = True

    def close(self) -> None:
        """Release the store's lock."""
        self.store.close()

    def save(self, state, history, force: bool = False) -> None:
        """Store the state every ``frequency`` passes (and when ``force``)."""
        if not force and int(state.nfev) % self.frequency:
            return
        # One flat float64 record (ints < 2**53 and bools are exact) instead of one
        # zarr array per field: a state write is then a single small array.
        leaves = [np.asarray(getattr(state, f)) for f in state._fields]
        layout = [[f, list(a.shape), a.dtype.str] for f, a in zip(state._fields, leaves)]
        flat = np.concatenate([a.astype(np.float64).ravel() for a in leaves])
        self.store.save_state(int(state.nfev), {"state": flat},
                              {"history": history, "cost": float(state.cost), "layout": layout,
                               "tolerances": self.tolerances})
        self.store.clear_passes()

    @staticmethod
    def pass_key(nfev: int, params) -> str:
        digest = hashlib.sha1(np.asarray(params, dtype=np.float64).tobytes()).hexdigest()[:12]
        return f"pass{nfev:05d}-{digest}"
