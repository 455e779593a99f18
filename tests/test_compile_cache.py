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


CLUSTER_SCRIPT = """
import numpy as np, jax.numpy as jnp, dask.array as da, nlsq_dask
from distributed import Client, LocalCluster
if __name__ == "__main__":
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster, \\
            Client(cluster):
        x = np.linspace(0, 10, 20000); y = 2.0 * np.exp(-0.5 * x) + 0.3
        r = nlsq_dask.fit(lambda x, a, b, c: a * jnp.exp(-b * x) + c,
                          da.from_array(x, chunks=5000), da.from_array(y, chunks=5000),
                          p0=[2.5, 0.6, 0.2], tier="chunked")
        print(r.popt.tolist())
"""


@pytest.mark.slow
def test_dask_worker_processes_use_the_cache(tmp_path):
    """The partition kernel is compiled on the worker only: its cache entry proves that the
    worker process turned the cache on."""
    pytest.importorskip("distributed")
    script = tmp_path / "cluster_fit.py"
    script.write_text(CLUSTER_SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NLSQ_", "JAX_COMPILATION_CACHE"))}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
               NLSQ_COMPILATION_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    names = [p.name for p in (tmp_path / "cache").iterdir()]
    assert any(n.startswith("jit_fn-") for n in names), names      # the worker's kernel
