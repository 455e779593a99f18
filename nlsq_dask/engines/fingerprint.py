"""What a checkpoint was written for: the problem's fingerprint, and how two differ.

A fingerprint is a JSON-safe dict: what the model computes (its identity digest), the
parameter names, each input's shape, chunks, dtype, dask token and a digest of its stored
files, the bounds, the loss and anything else that must match (``extra``). A store is
resumed only when the stored fingerprint equals the current one;
:func:`diff_fingerprints` says what differs. JSON helpers for the store's attrs live here
too (no pickle: non-finite floats are tagged ``{"__float__": "nan"}``).
"""

import enum
import json
import os
import re

import numpy as np

MODEL_DIFFERS = ("model: what it computes differs (its code, a constant or global it reads, or a "
                 "helper it calls changed)")


def to_json(obj, tag_floats=True, where="value"):
    """Convert ``obj`` to JSON-safe data; non-finite floats become tags (or plain strings)."""
    obj = obj.value if isinstance(obj, enum.Enum) else obj
    obj = obj.tolist() if isinstance(obj, (np.ndarray, np.generic)) else obj
    obj = os.fspath(obj) if isinstance(obj, os.PathLike) else obj
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        text = "nan" if obj != obj else "inf" if obj == np.inf else "-inf" if obj == -np.inf else None
        return obj if text is None else {"__float__": text} if tag_floats else text
    if isinstance(obj, dict):
        return {str(k): to_json(v, tag_floats, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v, tag_floats, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serialisable (checkpoints hold no pickle)")


def from_json(obj):
    """Inverse of :func:`to_json` with tagged floats."""
    hook = lambda d: float(d["__float__"]) if set(d) == {"__float__"} else d  # noqa: E731
    return json.loads(json.dumps(obj), object_hook=hook)


def fingerprint_problem(*, model, param_names, data, bounds=None, loss="linear", extra=None):
    """Describe a fitting problem as a JSON-safe dict for resume checks.

    Parameters
    ----------
    model : str
        What the model computes, e.g. :attr:`~nlsq_dask.solver.ModelSpec.identity` (a
        digest of its jaxpr: code, constants, globals and helpers included)
    param_names : sequence of str
    data : list of dict, e.g. ``{'name': 'y', 'shape', 'chunks', 'dtype', 'token'}`` per array
    bounds : (lb, ub) or None, broadcast per parameter; infinities stored as ``'inf'``/``'-inf'``
    loss : str
    extra : JSON-safe, anything else that must match on resume
    """
    names = [str(n) for n in param_names]
    if bounds is not None:
        bounds = [np.broadcast_to(np.asarray(b, dtype=float), (len(names),)).tolist() for b in bounds]
    if not isinstance(model, str):
        raise TypeError(f"model must be the model's identity digest (a str), not "
                        f"{type(model).__name__}")
    fp = {"model": model, "param_names": names, "data": list(data),
          "bounds": bounds, "loss": loss, "extra": extra}
    return to_json(fp, tag_floats=False, where="fingerprint")


def diff_fingerprints(stored, current):
    """List human-readable differences between two fingerprints (empty when equal), e.g.
    ``"data[1].shape: stored [100] vs now [200]"`` or ``"model: what it computes differs
    ..."``."""
    out = []

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        elif isinstance(a, list) and isinstance(b, list) and any(isinstance(v, (dict, list)) for v in a + b):
            if len(a) != len(b):
                out.append(f"{path}: stored {len(a)} entries vs now {len(b)}")
            for i, (u, v) in enumerate(zip(a, b)):
                walk(u, v, f"{path}[{i}]")
        elif a != b and path == "model":
            out.append(MODEL_DIFFERS)
        elif a != b and path.endswith(".files") and a and b:
            out.append(f"{_named(path, stored)}: the stored data were rewritten since the "
                       "checkpoint was written (the files' sizes or modification times differ)")
        elif a != b:
            out.append(f"{path}: stored {a!r} vs now {b!r}")

    walk(stored, current, "")
    return out


def _named(path, stored):
    """``'data[1] (y).files'`` for the path ``'data[1].files'`` of a fingerprint."""
    m = re.match(r"data\[(\d+)\]\.(.*)", path)
    try:
        return f"data[{m.group(1)}] ({stored['data'][int(m.group(1))]['name']}).{m.group(2)}"
    except (AttributeError, IndexError, KeyError, TypeError):
        return path
