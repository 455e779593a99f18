"""The zarr stores behind dask inputs: chunks that must exist, reads that name themselves.

A dask array made by ``da.from_zarr`` or ``xr.open_zarr`` keeps its zarr array (or
xarray's lazy wrapper of it) in one graph layer. From it:

* :func:`check_chunks_exist` lists the store (no chunk is read) before the first pass: a
  chunk that is not stored reads as the array's fill value, so zeros would be fitted,
  or, with a NaN fill, the points would silently drop out;
* :func:`guard_reads` puts a :class:`CheckedSource` in the layer's place, so a failing
  read (a corrupt chunk: "Zstd decompression error") says which input, chunk, points
  and store it was;
* :func:`stored_files_digest` digests the sizes and modification times of the files
  of stores on a local file system (no chunk is read), so a checkpoint notices data
  rewritten in place with the same shape and chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from ..errors import DataReadError, MissingChunksError

MISSING_CHUNKS = ("raise", "fill")
_MAX_DEPTH = 8


def _zarr_array(obj):
    """The ``zarr.Array`` inside ``obj`` (itself, or wrapped by xarray), else None."""
    for _ in range(_MAX_DEPTH):
        if isinstance(obj, CheckedSource):
            return obj.zarr
        if type(obj).__module__.startswith("zarr") and hasattr(obj, "nchunks"):
            return obj
        inner = getattr(obj, "array", None)
        if inner is None:
            inner = getattr(obj, "_array", None)
        if inner is None or inner is obj:
            return None
        obj = inner
    return None


def _source_layers(array):
    """``(layer name, key, source object, zarr.Array)`` for each zarr source of a dask array."""
    from dask.highlevelgraph import MaterializedLayer

    found = []
    for name, layer in array.dask.layers.items():
        if not isinstance(layer, MaterializedLayer) or len(layer) != 1:
            continue
        key, obj = next(iter(layer.items()))
        z = _zarr_array(obj)
        if z is not None:
            found.append((name, key, obj, z))
    return found


def describe(z) -> str:
    """``'y' in file:///data/fit.zarr`` for a zarr array."""
    path = getattr(z, "path", "") or getattr(z, "name", "") or "/"
    store = getattr(z, "store_path", None) or getattr(z, "store", "")
    return f"zarr array {str(path).lstrip('/') or '/'!r} in {store}"


def _missing_chunk_coords(z) -> list[tuple[int, ...]]:
    """Grid coordinates of the chunks (shards) of ``z`` that are not stored."""
    try:
        from zarr.core.array import _shards_initialized
        from zarr.core.sync import sync

        stored = set(sync(_shards_initialized(z.async_array)))
        return [c for c, k in zip(z._iter_shard_coords(), z._iter_shard_keys())
                if k not in stored]
    except (ImportError, AttributeError):  # another zarr: the public count only
        n_missing = int(z.nchunks) - int(z.nchunks_initialized)
        return [()] * max(n_missing, 0)


def check_chunks_exist(arrays, names, missing_chunks: str = "raise") -> None:
    """Raise :class:`MissingChunksError` if a zarr source of ``arrays`` lacks chunks.

    Lists each store once (metadata only). ``missing_chunks='fill'`` accepts them as
    the fill value (zarr does not write chunks that are all fill value unless
    ``write_empty_chunks=True``).
    """
    if missing_chunks not in MISSING_CHUNKS:
        raise ValueError(f"missing_chunks must be one of {list(MISSING_CHUNKS)}; "
                         f"got {missing_chunks!r}")
    if missing_chunks == "fill":
        return
    checked = set()
    for array, name in zip(arrays, names):
        if not hasattr(array, "dask"):
            continue
        for _, _, _, z in _source_layers(array):
            if id(z) in checked:
                continue
            checked.add(id(z))
            missing = _missing_chunk_coords(z)
            if not missing:
                continue
            grid = getattr(z, "shards", None) or z.chunks
            where = ", ".join(
                "chunk " + str(c) + (" (elements " + ", ".join(
                    f"{i * g:,}-{min((i + 1) * g, n) - 1:,}" for i, g, n in zip(c, grid, z.shape))
                    + ")" if c else "") for c in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise MissingChunksError(
                f"{len(missing)} chunk(s) of {describe(z)} (input {name}) are not in the store: "
                f"{where}{more}. They would read as the fill value {z.fill_value!r} and be "
                "fitted as data. Write the missing chunks, or, if they were left out because "
                "they hold only the fill value (zarr's write_empty_chunks=False), pass "
                "missing_chunks='fill'")


@dataclasses.dataclass(frozen=True)
class CheckedSource:
    """A dask source that reads through ``source`` and names the chunk when a read fails."""

    source: object
    zarr: object
    name: str

    @property
    def shape(self):
        return self.source.shape

    @property
    def dtype(self):
        return self.source.dtype

    @property
    def ndim(self):
        return len(self.source.shape)

    def __getitem__(self, key):
        try:
            return np.asarray(self.source[key])
        except Exception as exc:  # noqa: BLE001 - re-raised with where it happened
            raise DataReadError(
                f"reading input {self.name} from {describe(self.zarr)} failed at "
                f"{_selection(key, self.zarr)}: {type(exc).__name__}: {exc}. The chunk may be "
                "corrupt or unreadable; rewrite it, or check the storage") from exc


def _selection(key, z) -> str:
    """``'chunk (3,) (elements 3,000-3,999)'`` for a basic selection of ``z``."""
    key = key if isinstance(key, tuple) else (key,)
    if not all(isinstance(k, slice) for k in key):
        return f"selection {key!r}"
    grid = z.chunks
    start = tuple((k.start or 0) for k in key)
    stop = tuple(n if k.stop is None else k.stop for k, n in zip(key, z.shape))
    chunk = tuple(s // g for s, g in zip(start, grid))
    span = ", ".join(f"{a:,}-{b - 1:,}" for a, b in zip(start, stop))
    return f"chunk {chunk} (elements {span})"


def guard_reads(array, name: str):
    """``array`` with each zarr source wrapped in a :class:`CheckedSource` (same keys)."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    if not hasattr(array, "dask"):
        return array
    sources = _source_layers(array)
    if not sources:
        return array
    layers = dict(array.dask.layers)
    for layer_name, key, obj, z in sources:
        if isinstance(obj, CheckedSource):
            continue
        layers[layer_name] = MaterializedLayer({key: CheckedSource(obj, z, name)})
    graph = HighLevelGraph(layers, dict(array.dask.dependencies))
    return da.Array(graph, array.name, array.chunks, meta=array._meta)


def _file_listing(z) -> list[str] | None:
    """``'name|size|modified'`` for every file of the zarr array ``z``, from a listing of
    its store (local folders by ``os.stat``, fsspec file systems by ``find``, which gives
    object stores' sizes and ETags or modification times); None if the store is not a
    file system."""
    store = getattr(z, "store", None)
    rel = str(getattr(z, "path", "") or "")
    root = getattr(store, "root", None)
    if root is not None and os.path.isdir(root):                   # zarr.storage.LocalStore
        top = os.path.join(os.fspath(root), *rel.split("/"))
        out = []
        for folder, subdirs, files in os.walk(top):
            subdirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(folder, name))
                out.append(f"{os.path.relpath(os.path.join(folder, name), top)}|{st.st_size}|"
                           f"{st.st_mtime_ns}")
        return out
    fs = getattr(store, "fs", None)
    if fs is None or not hasattr(fs, "find"):                       # memory stores and others
        return None
    top = "/".join(p for p in (str(getattr(store, "path", "")).rstrip("/"), rel) if p)
    keys = ("size", "mtime", "LastModified", "ETag", "etag", "md5Hash", "updated")
    if getattr(fs, "async_impl", False):        # zarr's stores are async: run it on zarr's loop
        from zarr.core.sync import sync

        found = sync(fs._find(top, detail=True))
    else:
        found = fs.find(top, detail=True)
    return [f"{name}|" + "|".join(str(info.get(k)) for k in keys if info.get(k) is not None)
            for name, info in sorted(found.items())]


def stored_files_digest(array) -> str | None:
    """sha256 of the names, sizes and modification times (or ETags) of every file of the
    zarr arrays behind ``array`` (a dask array), or None when none is on a file system.
    Reads no chunk: it lists the stores."""
    if not hasattr(array, "dask"):
        return None
    h, found = hashlib.sha256(), False
    stores = {describe(z): z for _, _, _, z in _source_layers(array)}   # each store once
    for text, z in sorted(stores.items()):
        listing = _file_listing(z)
        if listing is not None:
            found = True
            h.update((text + "\n" + "\n".join(listing)).encode())
    return h.hexdigest() if found else None


def describe_sources(arrays) -> str:
    """The zarr arrays behind ``arrays``, for messages ('' if none)."""
    seen = []
    for array in arrays:
        if hasattr(array, "dask"):
            for _, _, _, z in _source_layers(array):
                text = describe(z)
                if text not in seen:
                    seen.append(text)
    return "; ".join(seen)


def guard_inputs(inputs, missing_chunks: str = "raise"):
    """Lazy :class:`~nlsq_dask.engines.data.Inputs` checked by :func:`check_chunks_exist`
    and read through :func:`guard_reads`; numpy inputs are returned as they are."""
    names = [f"x[{i}]" for i in range(inputs.n_inputs)] + ["y", "sigma"]
    arrays = [*inputs.xs, inputs.y, inputs.sigma]
    check_chunks_exist([a for a in arrays if a is not None],      # validates missing_chunks
                       [n for n, a in zip(names, arrays) if a is not None], missing_chunks)
    if not inputs.lazy:
        return inputs
    guarded = [None if a is None else guard_reads(a, n) for a, n in zip(arrays, names)]
    k = inputs.n_inputs
    return dataclasses.replace(inputs, xs=tuple(guarded[:k]), y=guarded[k], sigma=guarded[k + 1])
