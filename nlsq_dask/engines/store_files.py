"""The file-system side of a checkpoint store: links, atomic writes, the writer's lock,
and OS errors turned into messages that name the store.

* Nothing is written or deleted at, below or through a symbolic link
  (:func:`refuse_links`, :func:`remove_tree`): ``shutil.rmtree`` through a link to a
  folder would empty whatever it points to.
* :class:`StoreLock` is an exclusive OS lock (``flock``) on ``<store>.lock``, held by
  the one process that writes a store for the whole fit. The kernel drops it when that
  process ends, however it ends, so a lock file left by a killed process is stale by
  construction and is taken over (and said so in the log); a live holder is named
  ("in use by pid 1234 on node7 since ...").
* :func:`writing` turns an ``OSError`` (a full disk, a quota, a name too long, no
  permission) into a :class:`~nlsq_dask.errors.CheckpointError` that names the store and
  what to do.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import shutil
import socket
import threading

from ..errors import CheckpointError

logger = logging.getLogger("nlsq_dask")
_HINTS = {
    errno.ENOSPC: "the file system is full: free space, or set checkpoint_dir to another "
                  "file system",
    errno.EDQUOT: "the disk quota is exhausted: free space, or set checkpoint_dir elsewhere",
    errno.ENAMETOOLONG: "a file name is too long for this file system: give a shorter "
                        "checkpoint name (checkpoint_name=)",
    errno.EFBIG: "a file size limit was reached (ulimit -f, or the file system's)",
    errno.EACCES: "permission denied: set checkpoint_dir to a folder you can write",
    errno.EROFS: "the file system is read-only: set checkpoint_dir to a writable folder",
}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def writing(store: str, what: str, kept: bool = True):
    """Re-raise an ``OSError`` of the block as a :class:`CheckpointError` naming ``store``.

    Writes are ordered so that a failed one leaves the last complete state current
    (see :mod:`~nlsq_dask.engines.checkpoint`); the message says so (``kept``), or that
    nothing was written yet.
    """
    try:
        yield
    except OSError as exc:
        hint = _HINTS.get(exc.errno, "check the storage")
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        after = ("The store keeps its last complete state, from which the next run resumes"
                 if kept else "Nothing was stored; the next run starts this store afresh")
        raise CheckpointError(
            f"checkpoint {store}: writing {what} failed{where}: "
            f"{exc.strerror or exc} [errno {exc.errno}]; {hint}. {after}") from exc


def fsync_tree(path: str) -> None:
    """fsync every file and folder under ``path`` (folders where the OS allows it)."""
    for root, _, files in os.walk(path):
        for p in [os.path.join(root, f) for f in files] + [root]:
            fd = os.open(p, os.O_RDONLY)
            try:
                with contextlib.suppress(OSError):  # fsync of a folder fails on some systems
                    os.fsync(fd)
            finally:
                os.close(fd)


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` by fsynced temporary file and ``os.replace``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def refuse_links(path: str, what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the first symbolic link at or below ``path``.

    The store deletes old states and passes; through a link that would delete whatever
    the link points to, so a store with links is not used at all.
    """
    if os.path.islink(path):
        raise CheckpointError(f"{what} {path} is a symbolic link (to {os.readlink(path)}); "
                              "nlsq_dask never writes or deletes through links: give the real "
                              "path, or remove the link")
    for root, dirs, files in os.walk(path):  # links to folders are listed, never entered
        for name in dirs + files:
            link = os.path.join(root, name)
            if os.path.islink(link):
                raise CheckpointError(
                    f"{what} {path} contains a symbolic link {link} (to {os.readlink(link)}); "
                    "nlsq_dask never deletes through links and does not use this store: "
                    "remove the link (or the store)")


def no_link_on_the_way(store: str, path: str) -> None:
    """Raise :class:`CheckpointError` if ``store`` or a folder from it down to ``path`` is a
    link (or ``path`` is not inside ``store``)."""
    rel = os.path.relpath(path, store)
    if rel.startswith(os.pardir):
        raise CheckpointError(f"refusing to touch {path}: it is not inside the store {store}")
    part = store
    for name in [""] + ([] if rel == os.curdir else rel.split(os.sep)):
        part = os.path.join(part, name) if name else part
        if os.path.islink(part):
            raise CheckpointError(f"checkpoint {store}: {part} is a symbolic link (to "
                                  f"{os.readlink(part)}); nlsq_dask never writes or deletes "
                                  "through links: remove the link")


def remove_tree(path: str, store: str) -> None:
    """Delete ``path`` inside the store at ``store``, never at, below or through a link.
    Old states and passes are removed best effort; the store itself completely."""
    no_link_on_the_way(store, path)
    if os.path.isdir(path):
        refuse_links(path)
        shutil.rmtree(path, ignore_errors=path != store)


def subdirs(path: str) -> list[str]:
    """Names of the folders in ``path`` (sorted; none if it is missing)."""
    try:
        return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    except (FileNotFoundError, NotADirectoryError):
        return []


try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


_HELD: dict[str, list] = {}   # lock path -> [fd, thread id, count]: locks this process holds
_HELD_LOCK = threading.Lock()


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process"
    return (f"pid {holder['pid']} on {holder.get('host', '?')}"
            + (f" since {holder['since']}" if holder.get("since") else ""))


class StoreLock:
    """The exclusive writer's lock of the store at ``store`` (the file ``<store>.lock``).

    Re-entrant within one thread (a process reopening its own store); another thread or
    process gets a :class:`CheckpointError` naming the holder.
    """

    def __init__(self, store: str):
        self.store = store
        self.path = store + ".lock"
        self._held = False

    def acquire(self) -> "StoreLock":
        with _HELD_LOCK:
            held = _HELD.get(self.path)
            if held is not None:
                if held[1] != threading.get_ident():
                    raise CheckpointError(
                        f"checkpoint {self.store} is in use by another thread of this process "
                        "(a fit writing it): wait for that fit to finish, or give this fit "
                        "another checkpoint name")
                held[2] += 1
                self._held = True
                return self
            if os.path.islink(self.path):
                raise CheckpointError(f"checkpoint lock {self.path} is a symbolic link (to "
                                      f"{os.readlink(self.path)}); nlsq_dask never writes "
                                      "through links: remove it")
            with writing(self.store, "its lock file", kept=os.path.isdir(self.store)):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                             0o644)
            if not _try_lock(fd):
                holder = _read_holder(fd)
                os.close(fd)
                raise CheckpointError(
                    f"checkpoint {self.store} is in use by {_describe(holder)} (it holds "
                    f"{self.path}): two fits cannot write one store. Wait for that fit to "
                    "finish, or give this fit another checkpoint name")
            stale = _read_holder(fd)
            if stale.get("pid"):
                logger.info("nlsq_dask: taking over the stale lock %s of %s (no longer "
                            "running)", self.path, _describe(stale))
            try:
                with writing(self.store, "its lock file", kept=os.path.isdir(self.store)):
                    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": now()}).encode()
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, me)
            except BaseException:
                _unlock(fd)
                os.close(fd)
                raise
            _HELD[self.path] = [fd, threading.get_ident(), 1]
            self._held = True
        return self

    def release(self) -> None:
        """Release (the last release of a thread drops the OS lock; the file stays)."""
        with _HELD_LOCK:
            if not self._held:
                return
            self._held = False
            held = _HELD[self.path]
            held[2] -= 1
            if held[2] == 0:
                del _HELD[self.path]
                with contextlib.suppress(OSError):
                    os.ftruncate(held[0], 0)      # a lock file of nobody names nobody
                    _unlock(held[0])
                os.close(held[0])
