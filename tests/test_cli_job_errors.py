"""A job whose model module is broken ends in one line and status 2, never a traceback
(issue 14, item 5). Real modules on disk, imported by the real command."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import zarr

from nlsq_dask import cli

MODULES = {
    "syntax_error_model": ("def f(x, a:\n    return a\n", "SyntaxError"),
    "raising_model": ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    "missing_model": (None, "No module named 'missing_model'"),
}


@pytest.mark.parametrize("module", list(MODULES))
def test_broken_model_module_is_one_line_exit_2(tmp_path, capsys, monkeypatch, module):
    source, words = MODULES[module]
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.setattr(sys, "path", list(sys.path))       # the job's folder is added to it
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    x = np.linspace(0, 4, 400)
    g.create_array("t", data=x, chunks=(100,))
    g.create_array("y", data=2 * np.exp(-0.5 * x), chunks=(100,))
    (tmp_path / "job.yaml").write_text(f"data:\n  path: d.zarr\n  x: t\n  y: y\n"
                                       f"model: {module}:f\np0: [1.0, 1.0]\noutput: out\n")
    assert cli.main(["fit", str(tmp_path / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error: cannot import model") and words in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
