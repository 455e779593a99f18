"""``nlsq-dask fit CONFIG.yaml`` against a real dask scheduler, its error exits, and
``nlsq-dask checkpoints`` / ``info --data``."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nlsq_dask import FitWarning, cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "fit-config.yaml"
N, CHUNK = 200_000, 20_000
P0 = {"a": 2.5, "b": 0.6, "c": 0.2}
LOCAL_MODEL = '''import jax.numpy as jnp


def decay(x, amp, rate, offset):
    return amp * jnp.exp(-rate * x) + offset
'''


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("NLSQ_WORKFLOW_GOAL", "NLSQ_MEMORY_LIMIT_GB", "NLSQ_CHECKPOINT_DIR",
                 "NLSQ_ENABLE_CHECKPOINTING", "DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A zarr store with t, counts (10 chunks of 20,000) and the same data as numpy."""
    import zarr

    path = tmp_path_factory.mktemp("data") / "signal.zarr"
    t = np.linspace(0.0, 10.0, N)
    counts = 2.0 * np.exp(-0.5 * t) + 0.3 + np.random.default_rng(3).normal(0, 0.05, N)
    group = zarr.open_group(str(path), mode="w")
    group.create_array("t", data=t, chunks=(CHUNK,))
    group.create_array("counts", data=counts, chunks=(CHUNK,))
    return path, t, counts


def _wait(predicate, timeout, what, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: process {p.args} exited with {p.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready after {timeout} s")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A real ``dask scheduler`` and two single-thread ``dask worker`` processes on loopback."""
    folder = tmp_path_factory.mktemp("dask")
    sfile = folder / "scheduler.json"
    procs = []

    def start(*args):
        log = open(folder / f"proc{len(procs)}.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", *args], stdout=log,
                                      stderr=subprocess.STDOUT, cwd=folder))

    def read_address():
        try:
            return json.loads(sfile.read_text())["address"]
        except (OSError, ValueError, KeyError):
            return None

    try:  # all three start at once; the workers wait for the scheduler file
        start("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
              "--no-dashboard", "--scheduler-file", str(sfile))
        for _ in range(2):
            start("distributed.cli.dask_worker", "--scheduler-file", str(sfile), "--nthreads",
                  "1", "--memory-limit", "1GiB", "--no-nanny", "--no-dashboard", "--host",
                  "127.0.0.1", "--local-directory", str(folder))
        address = _wait(read_address, 60, "dask scheduler", procs)
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:  # only the processes started here, by their Popen handles
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(dataset):
    """``nlsq_dask.fit`` in this process on the numpy data, as the example config asks."""
    import nlsq_dask
    from nlsq_dask.models import exponential

    _, t, counts = dataset
    return nlsq_dask.fit(exponential, t, counts, p0=list(P0.values()),
                         bounds=([0, 0, -np.inf], [np.inf, 10, np.inf]), max_nfev=100,
                         ftol=1e-10, xtol=1e-10, gtol=1e-10, memory_limit_gb=8.0)


def example_config(tmp_path, dataset, **changes):
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["data"]["path"] = str(dataset[0])
    doc.update(changes)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nlsq_dask", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def check_outputs(out: Path, popt_ref, names=("a", "b", "c")):
    import zarr

    doc = json.loads((out / "result.json").read_text())
    assert doc["success"] is True and doc["param_names"] == list(names)
    np.testing.assert_allclose(doc["popt"], popt_ref, rtol=1e-8)
    assert doc["n_points_used"] == N and doc["nfev"] >= 2
    group = zarr.open_group(str(out / "result.zarr"), mode="r")
    np.testing.assert_array_equal(group["popt"][:], doc["popt"])
    np.testing.assert_array_equal(group["pcov"][:], np.asarray(doc["pcov"]))
    np.testing.assert_allclose(group["perr"][:], np.sqrt(np.diag(doc["pcov"])))
    assert group.attrs["param_names"] == list(names) and group.attrs["success"] is True
    hist = group["history"]
    n_hist = hist["iteration"].shape[0]
    assert n_hist == len(doc["history"]) >= 2
    assert hist["params"].shape == (n_hist, 3) and hist["cost"].shape == (n_hist,)
    np.testing.assert_array_equal(hist["params"][0], list(P0.values()))
    assert np.all(np.diff(hist["cost"][:]) <= 0) and np.all(np.diff(hist["elapsed"][:]) >= 0)
    return doc


def test_example_config_on_scheduler_address(tmp_path, dataset, scheduler, reference):
    config = example_config(tmp_path, dataset)
    proc = run_cli("fit", config, "--address", scheduler, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "2 worker(s)" in proc.stderr and "nlsq_dask.job INFO" in proc.stderr
    assert "fit converged" in proc.stdout and "result.json" in proc.stdout
    check_outputs(tmp_path / "signal-result", reference.popt)


def test_cluster_section_and_local_model_module(tmp_path, dataset, scheduler, reference,
                                                monkeypatch):
    """``cluster: {type: dask}``; the model lives next to the config, so workers get it by value."""
    (tmp_path / "jobmodels_cli_test.py").write_text(LOCAL_MODEL)
    config = example_config(
        tmp_path, dataset, model="jobmodels_cli_test:decay",
        p0=list(P0.values()), bounds=[[0, 0, "-inf"], ["inf", 10, None]],
        cluster={"type": "dask", "address": scheduler}, fit={"max_nfev": 100, "tier": "chunked"})
    config.rename(tmp_path / "mine.yaml")
    monkeypatch.chdir(tmp_path)  # in this process this time: the relative config path
    assert cli.main(["fit", "mine.yaml", "-q"]) == 0
    doc = check_outputs(tmp_path / "signal-result", reference.popt,
                        names=("amp", "rate", "offset"))
    assert doc["tier"] == "chunked"
    assert doc["config"]["cluster"] == {"type": "dask", "address": scheduler}


# ----------------------------------------------------------------------------- errors
def fit_error(tmp_path, capsys, doc, *extra):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    assert cli.main(["fit", str(path), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nlsq-dask: error: "), err
    return err[0]


def good_doc(dataset, **changes):
    doc = {"data": {"path": str(dataset[0]), "x": "t", "y": "counts"}, "model": "exponential",
           "p0": [2.5, 0.6, 0.2]}
    doc.update(changes)
    return doc


def test_missing_config_is_one_line_exit_2(tmp_path):
    proc = run_cli("fit", tmp_path / "nope.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"nlsq-dask: error: config file '{tmp_path / 'nope.yaml'}' " \
                                  "does not exist"


@pytest.mark.parametrize("changes, words", [
    ({"model": "nosuchmodel"}, ["model must be one of", "nosuchmodel"]),
    ({"model": "nosuchpkg.mod:f"}, ["cannot import model", "nosuchpkg"]),
    ({"workflow": {"bogus_key": 1}}, ["unknown key 'bogus_key'", "'workflow'"]),
    ({"tolerances": {"ftoll": 1e-8}}, ["unknown key 'ftoll'"]),
    ({"fitt": {}}, ["unknown section 'fitt'", "data, model"]),
    ({"fit": {"lossy": "huber"}}, ["unknown key 'lossy'", "'fit'"]),
    ({"p0": [1.0, 2.0]}, ["p0 has 2 values", "3 parameters (a, b, c)"]),
    ({"p0": {"a": 1, "b": 1}}, ["missing: ['c']"]),
    ({"bounds": [[0, 0], [1, 1]]}, ["lower list has 2 values"]),
    ({"p0": [1, "x", 2]}, ["p0[1] must be a number"]),
    ({"workflow": {"goal": "fastest"}}, ["fastest"]),
    ({"fit": {"tier": "warp"}}, ["warp"]),
    ({"cluster": {"type": "cloud"}}, ["cloud"]),
])
def test_config_errors(tmp_path, capsys, dataset, changes, words):
    message = fit_error(tmp_path, capsys, good_doc(dataset, **changes))
    for word in words:
        assert word in message, message


def test_data_errors(tmp_path, capsys, dataset):
    bad_var = good_doc(dataset, data={"path": str(dataset[0]), "x": "t", "y": "cnts"})
    message = fit_error(tmp_path, capsys, bad_var)
    assert "data.y: variable 'cnts' not found" in message and "available: counts, t" in message
    missing = good_doc(dataset, data={"path": str(tmp_path / "none.zarr"), "x": "t", "y": "y"})
    assert "does not exist" in fit_error(tmp_path, capsys, missing)
    no_y = good_doc(dataset, data={"path": str(dataset[0]), "x": "t"})
    assert "needs 'y'" in fit_error(tmp_path, capsys, no_y)
    assert "cannot parse" in fit_error(tmp_path, capsys, "data: [unclosed\n")


def test_jobqueue_type_without_dask_jobqueue(tmp_path, capsys, dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    message = fit_error(tmp_path, capsys, good_doc(dataset, cluster={"type": "pbs"}))
    assert "needs dask-jobqueue" in message and "nlsq-dask[hpc]" in message


# ----------------------------------------------------------------------------- in-process
def test_not_converged_exits_1(tmp_path, capsys, dataset):
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(good_doc(dataset, fit={"max_nfev": 1})))
    with pytest.warns(FitWarning, match="maximum number of function evaluations"):
        assert cli.main(["fit", str(path), "-q"]) == 1
    out = capsys.readouterr().out
    assert "did NOT converge" in out
    assert json.loads((tmp_path / "short-result" / "result.json").read_text())["status"] == 0


def test_checkpointed_fit_and_checkpoints_command(tmp_path, capsys, dataset):
    doc = good_doc(dataset, fit={"tier": "streaming", "checkpoint_name": "decay-run"},
                   workflow={"enable_checkpointing": True, "checkpoint_dir": "ckpt"},
                   output="out", data={"path": str(dataset[0]), "x": "t", "y": "counts",
                                       "chunks": 50_000})
    path = tmp_path / "ck.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert cli.main(["fit", str(path), "-q"]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["checkpoint"]["path"] == str(tmp_path / "ckpt" / "decay-run.zarr")
    capsys.readouterr()

    assert cli.main(["checkpoints", str(tmp_path / "ckpt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "iteration", "cost", "updated"]
    row = lines[1].split()
    assert row[0] == "decay-run" and int(row[1]) >= result["nit"]
    assert float(row[2]) == pytest.approx(result["cost"], rel=1e-6)

    assert cli.main(["checkpoints", str(tmp_path / "ckpt" / "decay-run.zarr"), "--show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "decay-run" and shown["iteration"] == int(row[1])
    assert shown["config"]["enable_checkpoints"] is True
    assert shown["fingerprint"]["param_names"] == ["a", "b", "c"]

    assert cli.main(["checkpoints", str(tmp_path / "nothing")]) == 2
    assert "is not a checkpoint folder" in capsys.readouterr().err


def test_info_on_a_zarr_dataset(capsys, dataset):
    store = str(dataset[0])
    assert cli.main(["info", "--data", store, "--y", "counts", "--x", "t", "--chunks",
                     "50000"]) == 0
    out = capsys.readouterr().out
    assert f"data: {store}" in out
    assert "y 'counts': float64 shape (200000,), 4 chunk(s) of <= 50,000 points" in out
    assert f"selection for {store} x 3 params" in out and "dataset:" in out
    assert cli.main(["info", "--data", store, "--y", "nope"]) == 2
    assert "variable 'nope' not found" in capsys.readouterr().err
    assert cli.main(["info", "--data", store]) == 2
    assert "needs --y" in capsys.readouterr().err
