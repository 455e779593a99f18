"""Zarr checkpoint store for long out-of-core fits (the package's only zarr writer).

``<dir>/<name>.zarr`` holds root attrs (format, fingerprint, config), ``CURRENT.json`` naming the live
``states/<key>`` record, ``summaries`` (each partition's data summary, written once) and
``passes/<pass_key>/<block>`` records of finished partitions. A record is a group of numeric arrays
whose attrs hold a sha256 ``checksum`` over its arrays *and* its attrs (layout included) and, written
last, ``complete``: a lost chunk, a half-written or an edited record is never returned. A new state is
written and fsynced, then made current by ``os.replace`` of ``CURRENT.json``: a crash or a full disk
leaves the previous state current (the last two are kept). A new store is built under a temporary name
and renamed into place, so an interrupted first write leaves no store at all. No pickle: JSON attrs
(non-finite floats tagged ``{"__float__": "nan"}``) and numeric arrays only. One writing process, which
holds ``<name>.zarr.lock`` (:class:`~nlsq_dask.engines.store_files.StoreLock`) until the fit ends.
"""
import hashlib
import json
import logging
import os
import re

import numpy as np
import zarr

from ..errors import CheckpointError
from .fingerprint import diff_fingerprints, fingerprint_problem, from_json, to_json  # noqa: F401
from .store_files import (StoreLock, fsync_tree, no_link_on_the_way, now, refuse_links,
                          remove_tree, subdirs, write_json_atomic, writing)

logger = logging.getLogger("nlsq_dask")
FORMAT_KEY = "nlsq_dask_checkpoint"
# 2: stored partitions carry their data summary; the solver state has polishing fields
# 3: checksums cover each record's attrs; per-partition data summaries; writer's lock
FORMAT_VERSION = 3
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_DTYPES = {"b": "|b1", "i": "<i8", "u": "<i8", "f": "<f8", "c": "<c16"}
_FRESH_HINT = "pass fresh=True (fit(..., checkpoint_fresh=True)) to start over"

_PARTIAL = ".partial-"       # <name>.zarr.partial-<pid>: a store being created
# the longest file name a store needs beside the name itself (".zarr.partial-" + a pid)
_NAME_ROOM = len(".zarr" + _PARTIAL) + 10


def _checksum(arrays, attrs):
    """sha256 of the arrays (names, dtypes, shapes, bytes) and of the attrs other than the
    checksum and the completion mark, as canonical JSON."""
    h = hashlib.sha256()
    for k, a in sorted(arrays.items()):
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode() + a.tobytes())
    meta = {k: v for k, v in attrs.items() if k not in ("checksum", "complete")}
    h.update(json.dumps(meta, sort_keys=True, allow_nan=False).encode())
    return h.hexdigest()


def _write_record(parent, key, arrays, attrs):
    """Write ``arrays`` into subgroup ``parent/key``: arrays, attrs + checksum, then ``complete`` last."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, a in arrays.items():
        if not isinstance(k, str) or not _SAFE.match(k):
            raise ValueError(f"array name {k!r} must match {_SAFE.pattern}")
        if a.dtype.kind not in _DTYPES:
            raise TypeError(f"array {k!r}: dtype {a.dtype} is not numeric (checkpoints hold no pickle)")
        arrays[k] = np.array(a, dtype=_DTYPES[a.dtype.kind], order="C")  # (not ascontiguousarray: 0-d)
    g = parent.create_group(key, overwrite=True)
    for k, a in arrays.items():
        fill = np.nan if a.dtype.kind in "fc" else 0  # a lost chunk reads as NaN, failing the checksum
        g.create_array(k, data=a, chunks=tuple(max(1, s) for s in a.shape) or "auto", fill_value=fill)
    attrs = {**attrs, "arrays": sorted(arrays)}
    checksum = _checksum(arrays, attrs)
    g.attrs.update({**attrs, "checksum": checksum})
    g.attrs["complete"] = True
    return checksum


def _read_record(path):
    """Read and verify a record group; return ``(attrs, arrays)`` or raise saying what is wrong."""
    if not os.path.exists(os.path.join(path, "zarr.json")):
        raise CheckpointError(f"{path}: missing or half-written (no zarr.json)")
    try:
        g = zarr.open_group(path, mode="r")
        attrs = dict(g.attrs)
        complete = attrs.get("complete") is True
        arrays = {k: np.asarray(g[k][...]) for k in attrs.get("arrays", [])} if complete else {}
    except Exception as e:
        raise CheckpointError(f"{path}: metadata or data unreadable ({type(e).__name__}: {e})") from e
    if not complete:
        raise CheckpointError(f"{path}: half-written (no 'complete' mark)")
    if _checksum(arrays, attrs) != attrs.get("checksum"):
        raise CheckpointError(f"{path}: checksum mismatch (missing or corrupted chunks, or "
                              "edited metadata)")
    return attrs, arrays


def _read_pointer(path):
    """Return the parsed ``CURRENT.json`` of the store at ``path``, None if absent; raise if damaged."""
    cur = os.path.join(path, "CURRENT.json")
    if not os.path.exists(cur):
        return None
    try:
        with open(cur, encoding="utf-8") as f:
            pointer = json.load(f)
        if not (isinstance(pointer.get("state"), str) and _SAFE.match(pointer["state"])):
            raise ValueError(f"bad pointer {pointer!r}")
    except Exception as e:
        raise CheckpointError(f"checkpoint {cur} is damaged ({type(e).__name__}: {e}); {_FRESH_HINT}") from e
    return pointer


def _n_partitions(path):
    return sum(len(subdirs(os.path.join(path, "passes", p))) for p in subdirs(os.path.join(path, "passes")))


def _root_attrs(path):
    if not os.path.isdir(path):
        raise CheckpointError(f"{path} is not an nlsq_dask checkpoint (not a directory)")
    try:
        attrs = dict(zarr.open_group(path, mode="r").attrs)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is damaged ({type(e).__name__}: {e}); {_FRESH_HINT}") from e
    if attrs.get(FORMAT_KEY) is None:
        raise CheckpointError(f"{path} is a zarr group but not an nlsq_dask checkpoint")
    if attrs.get(FORMAT_KEY) != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {attrs.get(FORMAT_KEY)!r}, written by "
                              f"another version of nlsq_dask (this one reads format "
                              f"{FORMAT_VERSION}); {_FRESH_HINT}")
    return attrs


def _info(path, safe=False):
    base = {"name": os.path.basename(path).removesuffix(".zarr"), "path": path}
    try:
        attrs = _root_attrs(path)
        pointer = _read_pointer(path)  # state attrs verified like load_state does (states are small)
        st = _read_record(os.path.join(path, "states", pointer["state"]))[0] if pointer else {}
    except CheckpointError as e:
        if not safe:
            raise
        return {**base, "error": str(e)}
    fp = attrs.get("fingerprint") or {}
    summary = {"model": str(fp.get("model", ""))[:12], "param_names": fp.get("param_names"),
               "n_data": len(fp.get("data") or []), "loss": fp.get("loss")}
    return {**base, "fingerprint": summary, "iteration": st.get("iteration"),
            "cost": from_json(st.get("scalars", {})).get("cost"), "created": attrs.get("created"),
            "updated": pointer.get("updated") if pointer else attrs.get("created"),
            "n_partitions": _n_partitions(path)}


def _name_max(directory):
    """The longest file name (bytes) the file system of ``directory`` allows."""
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):   # no pathconf (Windows) or no answer
        return 255


class CheckpointStore:
    """One fit's checkpoint group; create it with :meth:`open`, release it with :meth:`close`
    (or use it as a context manager). One writer: the process holding its lock."""

    def __init__(self, path, name, fingerprint, resumed, lock=None):
        self.path, self.name, self.fingerprint, self.resumed = path, name, fingerprint, resumed
        self._root = zarr.open_group(path, mode="r+")
        self._lock = lock

    def close(self):
        """Release the writer's lock (the store stays; idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @classmethod
    def open(cls, checkpoint_dir, name, fingerprint, *, resume=True, fresh=False):
        """Open or create ``checkpoint_dir/name.zarr`` for the problem ``fingerprint``.

        Parameters
        ----------
        checkpoint_dir : path, created if needed; must be writable (probed first)
        name : str of letters, digits and ``_.-`` (a trailing ``.zarr`` is dropped), short
            enough for the file system's name limit
        fingerprint : dict from :func:`fingerprint_problem`; must equal the stored one to resume
        resume, fresh : bool; ``fresh=True`` or ``resume=False`` deletes an existing store and starts over

        Returns a store whose ``.resumed`` says whether a state or partitions were found; it
        holds the store's lock until :meth:`close`. Raises :class:`CheckpointError` for an
        unwritable directory, a name too long, a store in use by another process, a damaged
        or foreign store, or a different fingerprint (the differences are listed).
        """
        cdir = os.path.abspath(os.fspath(checkpoint_dir))
        name = str(name).removesuffix(".zarr")
        if not _SAFE.match(name):
            raise CheckpointError(f"{cdir}: checkpoint name {name!r} must match {_SAFE.pattern}")
        probe = os.path.join(cdir, f".nlsq_dask_probe-{os.getpid()}")
        try:
            os.makedirs(cdir, exist_ok=True)
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            os.remove(probe)
        except OSError as e:
            raise CheckpointError(f"checkpoint directory {cdir} is not writable ({e})") from e
        limit = _name_max(cdir) - _NAME_ROOM
        if len(os.fsencode(name)) > limit:
            raise CheckpointError(
                f"{cdir}: checkpoint name {name[:40]!r}... is {len(os.fsencode(name))} bytes; "
                f"this file system allows checkpoint names of at most {limit} bytes: give a "
                "shorter checkpoint name (checkpoint_name=)")
        path = os.path.join(cdir, name + ".zarr")
        fingerprint = to_json(fingerprint, tag_floats=False, where="fingerprint")
        lock = StoreLock(path).acquire()
        try:
            return cls._open_locked(path, name, fingerprint, lock, resume and not fresh)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open_locked(cls, path, name, fingerprint, lock, resume):
        cdir = os.path.dirname(path)
        for d in subdirs(cdir):   # stores whose creation was interrupted (their lock is ours)
            if d.startswith(name + ".zarr" + _PARTIAL):
                with writing(path, "(removing) an interrupted new store"):
                    remove_tree(os.path.join(cdir, d), os.path.join(cdir, d))
        if os.path.lexists(path):
            refuse_links(path)
            try:
                attrs = _root_attrs(path)
            except CheckpointError as e:
                if resume or "not an nlsq_dask" in str(e):  # never delete foreign data
                    raise
            if not resume:
                logger.info("nlsq_dask: discarding checkpoint %s", path)
                with writing(path, "(removing) the old store"):
                    remove_tree(path, path)
            else:
                diffs = diff_fingerprints(attrs.get("fingerprint"), fingerprint)
                if diffs:
                    raise CheckpointError(f"checkpoint {path} was written for another problem: "
                                          f"{'; '.join(diffs)}; {_FRESH_HINT}")
                resumed = os.path.exists(os.path.join(path, "CURRENT.json")) or _n_partitions(path) > 0
                return cls(path, name, fingerprint, resumed, lock)
        meta = {FORMAT_KEY: FORMAT_VERSION, "created": now(), "fingerprint": fingerprint}
        partial = f"{path}{_PARTIAL}{os.getpid()}"
        try:
            with writing(path, "a new store", kept=False):     # built aside, renamed into place
                zarr.open_group(partial, mode="w").attrs.update(meta)
                fsync_tree(partial)
                os.rename(partial, path)
        except BaseException:
            if os.path.isdir(partial):
                remove_tree(partial, partial)
            raise
        return cls(path, name, fingerprint, False, lock)

    def save_config(self, config):
        """Store the resolved fit configuration (JSON-safe dict) in the root attributes."""
        config = to_json(config, where="config")
        with writing(self.path, "the configuration"):
            self._root.attrs["config"] = config

    def save_state(self, iteration, arrays, scalars):
        """Atomically store the solver state: numeric ``arrays`` (kept as float64/int64/bool/complex128)
        and JSON-safe ``scalars`` (nan/inf allowed; lists such as a cost history too)."""
        old = _read_pointer(self.path)
        it = int(iteration)
        key = f"{it}-b" if old and old["state"] == str(it) else str(it)  # never overwrite the current state
        attrs = {"iteration": it, "saved": now(), "scalars": to_json(scalars, where="scalars")}
        no_link_on_the_way(self.path, os.path.join(self.path, "states"))
        with writing(self.path, f"state {key}"):
            checksum = _write_record(self._root.require_group("states"), key, arrays, attrs)
            fsync_tree(os.path.join(self.path, "states", key))
            pointer = {"state": key, "iteration": it, "checksum": checksum, "updated": now()}
            write_json_atomic(os.path.join(self.path, "CURRENT.json"), pointer)
        keep = {key, old["state"] if old else key}
        for d in subdirs(os.path.join(self.path, "states")):
            if d not in keep:
                remove_tree(os.path.join(self.path, "states", d), self.path)

    def save_summaries(self, summaries):
        """Store the data summary of every partition (``(n_partitions, k)``), once: a
        resumed fit checks the partitions it computes again against them."""
        no_link_on_the_way(self.path, os.path.join(self.path, "summaries"))
        with writing(self.path, "the data summaries"):
            _write_record(self._root, "summaries", {"summaries": summaries}, {})
            fsync_tree(os.path.join(self.path, "summaries"))

    def load_summaries(self):
        """The stored data summaries, or None if none were stored (or they are half-written)."""
        path = os.path.join(self.path, "summaries")
        if not os.path.isdir(path):
            return None
        try:
            return _read_record(path)[1]["summaries"]
        except CheckpointError as e:
            if "half-written" in str(e):
                return None
            raise CheckpointError(f"checkpoint {self.path} is damaged: {e}; {_FRESH_HINT}") from e

    def load_state(self):
        """Return ``(iteration, arrays, scalars)`` of the current state, None if none; raise
        :class:`CheckpointError` when it is missing, half-written or corrupted."""
        pointer = _read_pointer(self.path)
        if pointer is None:
            return None
        path = os.path.join(self.path, "states", pointer["state"])
        try:
            attrs, arrays = _read_record(path)
            if attrs["checksum"] != pointer.get("checksum"):
                raise CheckpointError(f"{path}: checksum differs from CURRENT.json")
        except CheckpointError as e:
            raise CheckpointError(f"checkpoint {self.path} is damaged: {e}; {_FRESH_HINT}") from e
        return int(attrs["iteration"]), arrays, from_json(attrs.get("scalars", {}))

    def save_partition(self, pass_key, block_index, stats):
        """Atomically store the statistics of one finished block of pass ``pass_key`` ('it0007-p0012')."""
        if not _SAFE.match(str(pass_key)):
            raise ValueError(f"pass_key {pass_key!r} must match {_SAFE.pattern}")
        no_link_on_the_way(self.path, os.path.join(self.path, "passes", str(pass_key)))
        with writing(self.path, f"a partition of pass {pass_key}"):
            group = self._root.require_group("passes").require_group(str(pass_key))
            _write_record(group, str(int(block_index)), stats, {"block_index": int(block_index)})

    def save_partitions(self, pass_key, batch):
        """Store several finished blocks ``{block_index: stats}`` as one record (fewer, larger writes)."""
        if not _SAFE.match(str(pass_key)):
            raise ValueError(f"pass_key {pass_key!r} must match {_SAFE.pattern}")
        idx = sorted(int(i) for i in batch)
        names = sorted(batch[idx[0]])
        arrays = {n: np.stack([np.asarray(batch[i][n]) for i in idx]) for n in names}
        arrays["block_index"] = np.asarray(idx, dtype=np.int64)
        no_link_on_the_way(self.path, os.path.join(self.path, "passes", str(pass_key)))
        with writing(self.path, f"finished partitions of pass {pass_key}"):
            group = self._root.require_group("passes").require_group(str(pass_key))
            _write_record(group, f"batch{idx[0]}-{len(idx)}", arrays, {"blocks": idx})

    def load_partitions(self, pass_key):
        """Return ``{block_index: stats}`` of the complete, checksum-valid blocks of ``pass_key``
        (half-written blocks are skipped silently, corrupted ones with a warning: both get recomputed)."""
        base = os.path.join(self.path, "passes", str(pass_key))
        out = {}
        for d in subdirs(base):
            try:
                if d.startswith("batch"):
                    arrays = _read_record(os.path.join(base, d))[1]
                    for j, i in enumerate(arrays.pop("block_index").tolist()):
                        out[int(i)] = {n: a[j] for n, a in arrays.items()}
                    continue
                out[int(d)] = _read_record(os.path.join(base, d))[1]
            except (CheckpointError, ValueError) as e:
                if "half-written" not in str(e):
                    logger.warning("nlsq_dask: skipping damaged partition %s (%s)", os.path.join(base, d), e)
        return out

    def clear_passes(self, keep=None):
        """Delete the partition data of every pass except ``keep``."""
        for d in subdirs(os.path.join(self.path, "passes")):
            if d != keep:
                remove_tree(os.path.join(self.path, "passes", d), self.path)

    def info(self):
        """Summary dict: name, path, fingerprint summary, iteration, cost, created, updated, n_partitions."""
        return _info(self.path)


def list_checkpoints(checkpoint_dir):
    """Return the info of each ``*.zarr`` fit in ``checkpoint_dir`` (damaged ones with an ``error`` field)."""
    cdir = os.path.abspath(os.fspath(checkpoint_dir))
    return [_info(os.path.join(cdir, d), safe=True) for d in subdirs(cdir) if d.endswith(".zarr")]


def inspect_checkpoint(path):
    """Return the info of the checkpoint at ``path`` plus its stored ``config`` and ``fingerprint``."""
    info = _info(os.path.abspath(os.fspath(path)))
    attrs = _root_attrs(info["path"])
    return {**info, "config": from_json(attrs.get("config")), "fingerprint": attrs.get("fingerprint")}
