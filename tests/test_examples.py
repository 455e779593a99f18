"""The scripts in docs/examples run, at small sizes, as a newcomer would run them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def run(script, *args, cwd, timeout=300):
    env = {**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:nlsq_dask"}
    for name in ("NLSQ_WORKFLOW_GOAL", "NLSQ_MEMORY_LIMIT_GB", "NLSQ_CHECKPOINT_DIR",
                 "NLSQ_ENABLE_CHECKPOINTING", "DASK_SCHEDULER_ADDRESS", "MPLBACKEND"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == {"out_of_core_zarr.py", "per_pixel_cube.py", "cluster_job.py"}


def test_out_of_core_zarr(tmp_path):
    out = run("out_of_core_zarr.py", "--points", 60_000, "--chunk", 10_000, "--workers", 0,
              cwd=tmp_path)
    assert "fit converged" in out and "tier streaming" in out
    assert (tmp_path / "signal.zarr").is_dir()
    assert "partition of 10,000 points" in out


def test_per_pixel_cube(tmp_path):
    out = run("per_pixel_cube.py", "--size", 8, cwd=tmp_path)
    assert "64 of 64 pixels converged" in out
    assert (tmp_path / "cube-fit.zarr").is_dir()


@pytest.mark.slow
def test_cluster_job(tmp_path):
    out = run("cluster_job.py", "--dir", "job", "--points", 40_000, "--workers", 1, "--quiet",
              cwd=tmp_path)
    assert "exit status 0; tier chunked" in out
    res = json.loads((tmp_path / "job" / "signal-result" / "result.json").read_text())
    assert res["success"] and abs(res["popt"][1] - 0.5) < 0.01


def test_cluster_job_without_cluster(tmp_path):
    out = run("cluster_job.py", "--dir", "job", "--points", 40_000, "--workers", 0, "--quiet",
              cwd=tmp_path)
    assert "exit status 0" in out
    assert (tmp_path / "job" / "signal-result" / "result.zarr").is_dir()


def test_examples_draw_their_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    run("out_of_core_zarr.py", "--points", 20_000, "--chunk", 5_000, "--workers", 0,
        "--plot", "fit.png", cwd=tmp_path)
    run("per_pixel_cube.py", "--size", 6, "--plot", "rate.png", cwd=tmp_path)
    for name in ("fit.png", "rate.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_documentation_images_can_be_redrawn(tmp_path):
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "make_images.py"), "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    drawn = sorted(p.name for p in tmp_path.glob("*.png"))
    assert drawn == sorted(p.name for p in (ROOT / "docs" / "images").glob("*.png"))
