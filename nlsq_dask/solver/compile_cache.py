"""JAX's persistent compilation cache, on by default, in the user's cache directory.

Compiling the solver and the statistics kernels is most of a first fit's time. With the
cache, a new process loads them from disk instead (the cache is keyed by JAX on the
program and the compiler, so a model that changed is compiled anew).

* ``WorkflowConfig.compilation_cache`` / ``NLSQ_COMPILATION_CACHE``: True (default),
  False (opt out), or a directory.
* The default directory is ``$XDG_CACHE_HOME/nlsq_dask/jax`` (``~/.cache/nlsq_dask/jax``;
  ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows).
* A cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config``) is left as it is.
* Dask worker processes compile the partition kernels: they turn the cache on as their
  environment says (:func:`enable_from_environment`, default on).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("nlsq_dask")
# Every program is stored, however fast it compiled: with any threshold, programs that
# compile in about that time (the LM's start takes ~0.04 s, the pointwise check's pieces
# ~0.01 s, more under load) would be stored by one process and not by the next, by chance.
MIN_COMPILE_SECONDS = 0.0
_STATE: dict[str, object] = {}


def default_cache_dir() -> str:
    """The per-user cache directory of nlsq_dask's compiled kernels."""
    if sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    elif os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "nlsq_dask", "jax")


def enable_compilation_cache(setting=True) -> str | None:
    """Turn JAX's persistent compilation cache on as ``setting`` says (once a process:
    JAX fixes the directory at its first compile); return the directory in use, or
    None when it is off.

    Parameters
    ----------
    setting : bool or str
        True: :func:`default_cache_dir`; False: leave it off; a str: that directory.
    """
    import jax

    if "dir" in _STATE:
        return _STATE["dir"]
    configured = jax.config.jax_compilation_cache_dir
    if configured:                      # the user's own JAX cache: theirs to manage
        _STATE["dir"] = configured
        return configured
    if setting is False:                # off for this process (JAX decides at its first compile)
        _STATE["dir"] = None
        return None
    path = default_cache_dir() if setting is True else os.path.expanduser(str(setting))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:              # a read-only home: compile as before
        log.warning("nlsq_dask: compilation cache %s is not usable (%s); compiling without it",
                    path, exc)
        _STATE["dir"] = None
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _STATE["dir"] = path
    return path


def enable_from_environment() -> str | None:
    """:func:`enable_compilation_cache` as ``NLSQ_COMPILATION_CACHE`` says (default on):
    for processes that compile without a fit's configuration, such as dask workers."""
    if "dir" in _STATE:
        return _STATE["dir"]
    from ..workflow.loading import get_env_overrides

    try:
        setting = get_env_overrides().get("compilation_cache", True)
    except ValueError:              # a bad NLSQ_* variable is the client's to report
        setting = True
    return enable_compilation_cache(setting)
