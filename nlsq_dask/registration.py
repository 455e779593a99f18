"""Register the ``.nlsq`` xarray accessor when xarray is imported, not before.

Importing xarray costs ~0.2 s, a third of ``import nlsq_dask``, and fits of numpy or
dask data never need it. So ``import nlsq_dask`` registers the accessor at once only
when xarray is already imported; otherwise a finder on ``sys.meta_path`` waits for
the first ``import xarray`` and registers it right after xarray has loaded. Either
way ``ds.nlsq`` works whatever the order of the imports.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys


class _RegisterAfter(importlib.abc.Loader):
    """xarray's own loader, then the accessor's module."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        importlib.import_module("nlsq_dask.accessor")

    def __getattr__(self, name):            # anything else xarray's loader offers
        return getattr(self.loader, name)


class _XarrayFinder(importlib.abc.MetaPathFinder):
    """Finds ``xarray`` with the other finders and wraps its loader, once."""

    def find_spec(self, name, path=None, target=None):
        if name != "xarray":
            return None
        uninstall()
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisterAfter(spec.loader)
        return spec


_FINDER = _XarrayFinder()


def uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def register_accessor() -> None:
    """Register ``.nlsq`` now if xarray is loaded, else as soon as it is imported."""
    if "xarray" in sys.modules:
        importlib.import_module("nlsq_dask.accessor")
    elif _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
