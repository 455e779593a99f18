"""JAX's persistent compilation cache: on by default, opt-out, and a second process that
finds the compiled kernels (issue 16). Each case runs in a fresh process, since JAX fixes
its cache directory at the first compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nlsq_dask.workflow import WorkflowConfig, get_env_overrides

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, os, sys, time
import numpy as np, jax, jax.numpy as jnp, nlsq_dask
x = np.linspace(0, 10, 5000); y = 2.0 * np.exp(-0.5 * x) + 0.3
kw = json.loads(sys.argv[1])
if "config" in kw:
    kw["config"] = nlsq_dask.WorkflowConfig(**kw["config"])
t0 = time.perf_counter()
r = nlsq_dask.fit(lambda x, a, b, c: a * jnp.exp(-b * x) + c, x, y, p0=[2.5, 0.6, 0.2], **kw)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "popt": r.popt.tolist(),
                  "seconds": time.perf_counter() - t0}))
"""


def fit_in_a_new_process(tmp_path, env=None, **kw):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("NLSQ_", "JAX_COMPILATION_CACHE"))}
    clean.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), HOME=str(tmp_path / "home"),
                 XDG_CACHE_HOME=str(tmp_path / "xdg"), **(env or {}))
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(kw)], env=clean,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def entries(path) -> int:
    return sum(1 for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else 0


def test_on_by_default_in_the_user_cache_and_found_by_the_next_process(tmp_path):
    first = fit_in_a_new_process(tmp_path)
    expect = str(tmp_path / "xdg" / "nlsq_dask" / "jax")
    assert first["dir"] == expect and entries(expect) > 0
    n = entries(expect)
    second = fit_in_a_new_process(tmp_path)
    assert second["popt"] == first["popt"]
    assert entries(expect) == n                 # everything it compiled was found


@pytest.mark.parametrize("how", ["env", "config"])
def test_opt_out(tmp_path, how):
    if how == "env":
        out = fit_in_a_new_process(tmp_path, env={"NLSQ_COMPILATION_CACHE": "0"})
    else:
        out = fit_in_a_new_process(tmp_path, config={"compilation_cache": False})
    assert out["dir"] is None
    assert entries(tmp_path / "xdg") == 0


def test_a_directory_of_ones_own(tmp_path):
    out = fit_in_a_new_process(tmp_path, env={"NLSQ_COMPILATION_CACHE": str(tmp_path / "mine")})
    assert out["dir"] == str(tmp_path / "mine") and entries(tmp_path / "mine") > 0


def test_a_jax_cache_the_user_configured_is_left_alone(tmp_path):
    out = fit_in_a_new_process(tmp_path, env={"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jx")})
    assert out["dir"] == str(tmp_path / "jx") and entries(tmp_path / "xdg") == 0


def test_settings_parse():
    assert get_env_overrides({"NLSQ_COMPILATION_CACHE": "off"}) == {"compilation_cache": False}
    assert get_env_overrides({"NLSQ_COMPILATION_CACHE": "1"}) == {"compilation_cache": True}
    assert get_env_overrides({"NLSQ_COMPILATION_CACHE": "/scratch/c"}) == {
        "compilation_cache": "/scratch/c"}
    assert WorkflowConfig().compilation_cache is True
    assert WorkflowConfig(compilation_cache=Path("/tmp/c")).compilation_cache == "/tmp/c"
    with pytest.raises(TypeError, match="compilation_cache must be True, False or a directory"):
        WorkflowConfig(compilation_cache=3)
