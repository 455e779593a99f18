"""The ``nlsq-dask`` command: demo end to end, info, and error exits."""

import re
import subprocess
import sys

import numpy as np
import pytest

import nlsq_dask
from nlsq_dask import cli

TRUE = dict(zip("abc", cli.DEMO_TRUE))


@pytest.fixture(autouse=True)
def clean_config(monkeypatch, tmp_path):
    """No stray nlsq.yaml or NLSQ_* variable changes what the commands do."""
    for name in ("NLSQ_WORKFLOW_GOAL", "NLSQ_MEMORY_LIMIT_GB", "NLSQ_CHECKPOINT_DIR",
                 "NLSQ_ENABLE_CHECKPOINTING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def run_cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "nlsq_dask", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def fitted(stdout: str) -> dict[str, tuple[float, float]]:
    found = re.findall(r"^\s+(\w+) = (\S+) ± (\S+)$", stdout, flags=re.M)
    return {name: (float(v), float(e)) for name, v, e in found}


def check_demo_output(stdout: str, tier: str) -> None:
    assert f"tier: {tier}" in stdout
    assert "status: converged" in stdout
    params = fitted(stdout)
    assert set(params) == set(TRUE)
    for name, (value, err) in params.items():
        assert 0 < err < 0.05
        assert abs(value - TRUE[name]) < 6 * err + 1e-3, (name, value, err)
    assert re.search(r"passes \(nfev\): \d+; iterations: \d+", stdout)
    assert "wall time:" in stdout
    assert "selection:" in stdout and "dataset:" in stdout


def test_demo_standard_end_to_end(tmp_path):
    import zarr

    store = tmp_path / "demo.zarr"
    proc = run_cli("demo", "--tier", "standard", "--points", 20000, "--path", store,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "written" in proc.stdout and "LocalCluster, 2 worker processes" in proc.stdout
    assert "dashboard:" not in proc.stdout  # only with --dashboard
    check_demo_output(proc.stdout, "standard")

    group = zarr.open_group(str(store), mode="r")
    assert group["x"].shape == group["y"].shape == (20000,)
    assert group["x"].chunks == (20000,)
    x = np.asarray(group["x"][:])
    assert x[0] == 0.0 and x[-1] == 10.0
    assert dict(group.attrs[cli.DEMO_KEY])["complete"] is True

    # A second run reuses the store (here without a cluster, in this process).
    assert cli.main(["demo", "--tier", "standard", "--points", "20000", "--path", str(store),
                     "--workers", "0"]) == 0


def test_demo_writes_in_chunks_of_a_million(tmp_path):
    import zarr

    store = tmp_path / "big.zarr"
    assert cli.demo_dataset(store, 2_500_000, seed=1) is False
    group = zarr.open_group(str(store), mode="r")
    assert group["y"].chunks == (1_000_000,)
    y = np.asarray(group["y"][-1000:])
    x = np.asarray(group["x"][-1000:])
    resid = y - (2.0 * np.exp(-0.5 * x) + 0.3)
    assert abs(resid.std() - cli.DEMO_NOISE) < 0.01
    assert cli.demo_dataset(store, 2_500_000, seed=1) is True
    assert cli.demo_dataset(store, 1_000, seed=1) is False  # other shape: rewritten
    assert zarr.open_group(str(store), mode="r")["x"].shape == (1_000,)
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert cli.demo_dataset(empty, 1_000, seed=0) is False  # an empty directory is used


@pytest.mark.slow
def test_demo_default_tier(tmp_path):
    proc = run_cli("demo", "--points", 200000, "--path", tmp_path / "demo.zarr", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_demo_output(proc.stdout, "streaming")


def test_info_reports_resources_and_selection(capsys):
    assert cli.main(["info", "--points", "1000", "--params", "2"]) == 0
    out = capsys.readouterr().out
    for key in ("host memory:", "gpus:", "memory tier:", "cluster:", "packages: nlsq-dask"):
        assert key in out
    assert "selection for 1,000 points x 2 params" in out
    assert "dataset: 1,000 points x 2 params (small)" in out
    assert "tier: standard" in out


def test_info_selects_streaming_when_memory_is_short(capsys):
    assert cli.main(["info", "--points", "1000000000", "--memory-limit-gb", "1",
                     "--goal", "quality"]) == 0
    out = capsys.readouterr().out
    assert "tier: streaming" in out
    assert "goal=quality" in out and "memory_limit_gb=1.0" in out


def test_info_reads_environment(capsys, monkeypatch):
    monkeypatch.setenv("NLSQ_WORKFLOW_GOAL", "fast")
    assert cli.main(["info", "--points", "1000"]) == 0
    assert "goal=fast" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["info", "--goal", "bogus"], "goal='bogus' is not a valid OptimizationGoal"),
    (["info", "--preset", "nope"], "is not a known preset"),
])
def test_user_errors_exit_2_without_traceback(argv, needle, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error: ") and needle in err
    assert "Traceback" not in err


def test_bad_environment_is_a_user_error(capsys, monkeypatch):
    monkeypatch.setenv("NLSQ_MEMORY_LIMIT_GB", "lots")
    assert cli.main(["info"]) == 2
    assert "NLSQ_MEMORY_LIMIT_GB" in capsys.readouterr().err


def test_demo_refuses_foreign_path(tmp_path, capsys):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    assert cli.main(["demo", "--path", str(other), "--points", "1000", "--workers", "0"]) == 2
    assert "not an nlsq-dask demo dataset" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "precious"


def test_fit_errors_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "DEMO_P0", (2.5, 0.6, 0.2, 9.0))  # 4 values for 3 parameters
    assert cli.main(["demo", "--tier", "standard", "--points", "1000", "--workers", "0",
                     "--path", str(tmp_path / "d.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error: ") and "Traceback" not in err


def test_error_in_subprocess_has_no_traceback(tmp_path):
    proc = run_cli("info", "--goal", "bogus", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nlsq-dask: error: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv", [[], ["demo", "--points", "0"], ["demo", "--workers", "-1"],
                                  ["demo", "--tier", "fastest"], ["frobnicate"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: nlsq-dask" in capsys.readouterr().err


def test_parser_lists_commands_and_version(capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == ["demo", "info", "fit", "checkpoints"]
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert f"nlsq-dask {nlsq_dask.__version__}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- dashboard
DASHBOARD_HINT = 'pip install "nlsq-dask[dashboard]"'


def test_demo_dashboard_option_parses():
    parser = cli.build_parser()
    assert parser.parse_args(["demo"]).dashboard is False
    assert parser.parse_args(["demo", "--dashboard", "--workers", "1"]).dashboard is True


@pytest.fixture
def no_cluster(monkeypatch):
    """Fail the test if the demo starts a cluster."""
    def start_cluster(*args, **kwargs):
        raise AssertionError("the demo started a cluster")

    monkeypatch.setattr(cli, "start_cluster", start_cluster)


def test_dashboard_without_bokeh_fails_at_once(tmp_path, capsys, monkeypatch, no_cluster):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bokeh" else real(name, *a))
    store = tmp_path / "d.zarr"
    assert cli.main(["demo", "--dashboard", "--points", "1000", "--path", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error: ") and DASHBOARD_HINT in err
    assert "bokeh" in err and "Traceback" not in err
    assert not store.exists()  # not even the data was written


def test_dashboard_with_blocked_bokeh_module(monkeypatch):
    from nlsq_dask.cluster import dashboard_missing

    monkeypatch.setitem(sys.modules, "bokeh", None)  # `import bokeh` raises ImportError
    assert DASHBOARD_HINT in dashboard_missing()


def test_dashboard_with_too_old_bokeh(monkeypatch):
    import importlib.metadata
    import importlib.util

    from nlsq_dask.cluster import dashboard_missing

    real_spec, real_version = importlib.util.find_spec, importlib.metadata.version
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bokeh" else real_spec(name, *a))
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "2.4.3" if name == "bokeh" else real_version(name))
    message = dashboard_missing()
    assert "not bokeh 2.4.3" in message and DASHBOARD_HINT in message


def test_dashboard_needs_workers(tmp_path, capsys, no_cluster):
    assert cli.main(["demo", "--dashboard", "--workers", "0", "--points", "1000",
                     "--path", str(tmp_path / "d.zarr")]) == 2
    assert "--dashboard needs a cluster" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_dashboard_link_answers_during_the_fit(tmp_path, capsys, monkeypatch):
    """The link is printed before the fit and the dashboard serves it while the fit runs."""
    import urllib.request

    pytest.importorskip("bokeh")
    real_fit, seen = nlsq_dask.fit, {}

    def fit(*args, **kwargs):
        out = capsys.readouterr().out
        links = re.findall(r"^dashboard: (http://\S+/status)$", out, flags=re.M)
        assert len(links) == 1, out
        with urllib.request.urlopen(links[0], timeout=60) as response:
            seen["status"] = response.status
            seen["page"] = response.read().decode(errors="replace")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(nlsq_dask, "fit", fit)
    assert cli.main(["demo", "--dashboard", "--points", "20000", "--workers", "1",
                     "--path", str(tmp_path / "d.zarr")]) == 0
    # without bokeh distributed answers 200 too, with "Dask needs bokeh>=... for the dashboard"
    assert seen["status"] == 200 and "needs bokeh" not in seen["page"]
    assert "<title>" in seen["page"] and "Dask" in seen["page"]
    check_demo_output(capsys.readouterr().out, "streaming")


# ----------------------------------------------------------------------------- info: memory
def test_info_names_the_memory_source(capsys, monkeypatch):
    from nlsq_dask.workflow import resources

    host = resources.HostMemory(total_gb=4.0, available_gb=3.0, source="cgroup",
                                limit="/sys/fs/cgroup/memory.max", machine_total_gb=256.0,
                                machine_available_gb=200.0)
    monkeypatch.setattr(resources, "detect_host_memory", lambda: host)
    monkeypatch.setattr(resources, "get_gpu_free_memory_gb", lambda: [])
    assert cli.main(["info", "--points", "1000"]) == 0
    out = capsys.readouterr().out
    assert ("host memory: 3.0 GiB available of 4.0 GiB (cgroup; limit "
            "/sys/fs/cgroup/memory.max; the machine: 200.0 of 256.0 GiB)") in out
    assert "memory tier: low (3.0 GiB host + GPU available)" in out
    assert "memory limit:" not in out

    monkeypatch.setenv("NLSQ_MEMORY_LIMIT_GB", "2")
    assert cli.main(["info", "--points", "1000"]) == 0
    assert ("memory limit: 2 GiB (NLSQ_MEMORY_LIMIT_GB); the selection counts 2.0 GiB of "
            "host memory") in capsys.readouterr().out
    assert cli.main(["info", "--points", "1000", "--memory-limit-gb", "8"]) == 0
    assert ("memory limit: 8 GiB (--memory-limit-gb); the selection counts 3.0 GiB"
            in capsys.readouterr().out)
