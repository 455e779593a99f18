"""Faults a user meets with checkpoints and jobs on a shared file system (issue 14).

Real files, real links, real processes and real (small) file systems; nothing here mocks
the file system.

1. Links: nothing is written or deleted at, below or through a symbolic link.
2. Another problem is never resumed: zarr data or sigma rewritten in place, data changed
   without a trace on disk (caught by the partitions' stored summaries in the first pass
   after the resume), an edited model constant, a rebound global, an edited helper module;
   and the compiled kernels of every tier follow the edit.
3. Two writers: the second is refused naming the first's pid; a killed writer's lock is
   taken over; the survivor's answer is exact.
4. Every failure names the store: a full file system, a file size limit, a name too long,
   an edited state layout; an interrupted first write leaves nothing in the way.
5. The CLI ends in one line and status 2 (broken model modules, output links and files).
6. YAML aliases are refused.
7. A checkpointed fit of in-memory data runs as, and reports, ``chunked``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

jnp = pytest.importorskip("jax.numpy")
da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")
xr = pytest.importorskip("xarray")
from scipy.optimize import curve_fit  # noqa: E402

import nlsq_dask  # noqa: E402
from nlsq_dask import cli  # noqa: E402
from nlsq_dask.engines.checkpoint import (CheckpointError, CheckpointStore,  # noqa: E402
                                          fingerprint_problem, list_checkpoints)
from nlsq_dask.errors import DataChangedError  # noqa: E402
from nlsq_dask.workflow import WorkflowTier, load_yaml_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).parent / "scripts"
RUN_TIMEOUT = 240
P0 = [1.0, 0.1, 0.0]
N, CHUNK = 4000, 1000


def expdecay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def expdecay_np(x, a, k, c):
    return a * np.exp(-k * x) + c


def problem(seed=0):
    x = np.linspace(0.0, 10.0, N)
    y = 3.0 * np.exp(-0.7 * x) + 0.5 + 0.01 * np.random.default_rng(seed).standard_normal(N)
    return x, y, 0.01 + 0.001 * x


def scipy_fit(x, y, sigma=None):
    return curve_fit(expdecay_np, x, y, p0=P0, sigma=sigma, xtol=1e-12, ftol=1e-12,
                     gtol=1e-12)[0]


def env_for_subprocess():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    for key in ("NLSQ_ENABLE_CHECKPOINTING", "NLSQ_CHECKPOINT_DIR"):
        env.pop(key, None)
    return env


def quiet_fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # pass budgets end in a FitWarning
        return nlsq_dask.fit(*args, **kw)


# ------------------------------------------------------------------------ 1. links
DATA = [{"name": "x", "shape": [100], "chunks": [50], "dtype": "float64", "token": "tx"}]


def fp():
    return fingerprint_problem(model="0" * 64, param_names=["a", "b"], data=DATA)


def victim(tmp_path):
    """A folder of someone else's data with a few subfolders (what rmtree would delete)."""
    v = tmp_path / "precious"
    for sub in ("0", "1", "run-a"):
        (v / sub).mkdir(parents=True)
        (v / sub / "data.txt").write_text("do not delete")
    return v


def intact(v) -> bool:
    return all((v / sub / "data.txt").read_text() == "do not delete" for sub in ("0", "1", "run-a"))


def written_store(tmp_path):
    """A store with a saved state and a stored pass (so states/ and passes/ exist)."""
    store = CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())
    store.save_state(1, {"p": np.array([1.0, 2.0])}, {"cost": 1.0})
    store.save_partitions("pass00001-abc", {0: {"s0": np.array(1.0)}})
    return store


@pytest.mark.parametrize("inner", ["states", "passes"])
def test_link_inside_a_store_is_refused_and_nothing_is_deleted(tmp_path, inner):
    store = written_store(tmp_path)
    v = victim(tmp_path)
    real = os.path.join(store.path, inner)
    os.rename(real, real + ".moved")
    os.symlink(v, real)
    with pytest.raises(CheckpointError, match=f"contains a symbolic link .*{inner}"):
        CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())            # resume
    with pytest.raises(CheckpointError, match="symbolic link"):
        CheckpointStore.open(tmp_path / "ckpt", "fit1", fp(), fresh=True)
    # a link that appears while the store is open is not written or deleted through either
    with pytest.raises(CheckpointError, match="symbolic link"):
        if inner == "states":
            store.save_state(2, {"p": np.array([1.5, 2.5])}, {"cost": 0.5})
        else:
            store.save_partitions("pass00002-def", {0: {"s0": np.array(2.0)}})
    if inner == "passes":
        with pytest.raises(CheckpointError, match="symbolic link"):
            store.clear_passes()
    assert intact(v)
    assert sorted(os.listdir(v)) == ["0", "1", "run-a"]      # nothing written into it


@pytest.mark.parametrize("fresh", [False, True])
def test_store_root_that_is_a_link_is_refused(tmp_path, fresh):
    store = written_store(tmp_path)
    v = victim(tmp_path)
    (tmp_path / "other").mkdir()
    os.symlink(v, tmp_path / "other" / "fit1.zarr")
    with pytest.raises(CheckpointError, match=r"fit1.zarr is a symbolic link"):
        CheckpointStore.open(tmp_path / "other", "fit1", fp(), fresh=fresh)
    assert intact(v)
    assert os.path.isdir(store.path)


def test_lock_file_that_is_a_link_is_refused(tmp_path):
    v = victim(tmp_path)
    (tmp_path / "ckpt").mkdir()
    os.symlink(v / "0" / "data.txt", tmp_path / "ckpt" / "fit1.zarr.lock")
    with pytest.raises(CheckpointError, match=r"fit1.zarr.lock is a symbolic link"):
        CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())
    assert intact(v)


def test_fit_with_checkpoint_fresh_on_a_link_keeps_the_target(tmp_path):
    v = victim(tmp_path)
    (tmp_path / "ckpt").mkdir()
    os.symlink(v, tmp_path / "ckpt" / "decay.zarr")
    x = np.linspace(0, 4, 400)
    with pytest.raises(CheckpointError, match="symbolic link"):
        nlsq_dask.fit(lambda x, a, b: a * jnp.exp(-b * x), x, 2 * np.exp(-0.5 * x),
                      p0=[1.0, 1.0], tier="streaming", enable_checkpoints=True,
                      checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_name="decay",
                      checkpoint_fresh=True)
    assert intact(v)


def job_data(tmp_path):
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    x = np.linspace(0, 4, 400)
    g.create_array("t", data=x, chunks=(100,))
    g.create_array("y", data=2 * np.exp(-0.5 * x) + 0.1, chunks=(100,))


@pytest.mark.parametrize("what", ["result.zarr", "output folder", "output file"])
def test_cli_output_links_and_files_are_refused_before_the_fit(tmp_path, capsys, what):
    job_data(tmp_path)
    v = victim(tmp_path)
    out = tmp_path / "out"
    if what == "result.zarr":
        out.mkdir()
        os.symlink(v, out / "result.zarr")
    elif what == "output folder":
        os.symlink(v, out)
    else:
        out.write_text("a file")
    (tmp_path / "job.yaml").write_text("data:\n  path: d.zarr\n  x: t\n  y: y\nmodel: exponential\n"
                                       "p0: [1.0, 1.0, 0.0]\noutput: out\n")
    assert cli.main(["fit", str(tmp_path / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert ("symbolic link" in err or "is a file" in err) and "Traceback" not in err
    assert intact(v)


# ------------------------------------------------------------------------ 2. another problem
def write_zarr(path, **arrays):
    """Uncompressed arrays (a rewrite keeps every chunk file's size)."""
    g = zarr.open_group(str(path), mode="w")
    for name, v in arrays.items():
        g.create_array(name, data=v, chunks=(CHUNK,), compressors=None)


def zarr_fit(data, ckpt, **kw):
    x, y, s = (da.from_zarr(str(data / n)) for n in ("x", "y", "sigma"))
    return quiet_fit(expdecay, x, y, p0=P0, sigma=s, tier="streaming", enable_checkpoints=True,
                     checkpoint_dir=str(ckpt), checkpoint_name="decay", **kw)


def rewrite_in_place(array_dir, values, keep_file_times=False):
    """Write ``values`` into the zarr array at ``array_dir`` (same shape and chunks); with
    ``keep_file_times`` every file gets its old modification time back (same sizes too)."""
    times = {p: os.stat(p) for p in Path(array_dir).rglob("*") if p.is_file()}
    zarr.open_array(str(array_dir), mode="r+")[:] = values
    if keep_file_times:
        for p, st in times.items():
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert {p: (os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in times} == \
            {p: (st.st_size, st.st_mtime_ns) for p, st in times.items()}


@pytest.mark.parametrize("what, index", [("y", 1), ("sigma", 2)])
def test_zarr_data_rewritten_in_place_are_not_resumed(tmp_path, what, index):
    x, y, s = problem()
    write_zarr(tmp_path / "d.zarr", x=x, y=y, sigma=s)
    first = zarr_fit(tmp_path / "d.zarr", tmp_path / "ckpt")
    np.testing.assert_allclose(first.popt, scipy_fit(x, y, s), rtol=1e-6)
    new = {"y": y + 0.05 * np.exp(-0.2 * x), "sigma": s * (1.0 + 0.3 * x)}[what]
    rewrite_in_place(tmp_path / "d.zarr" / what, new)
    with pytest.raises(CheckpointError, match=rf"data\[{index}\] \({what}\)\.files: the stored "
                                              r"data were rewritten") as err:
        zarr_fit(tmp_path / "d.zarr", tmp_path / "ckpt")
    assert str(tmp_path / "ckpt" / "decay.zarr") in str(err.value)
    again = zarr_fit(tmp_path / "d.zarr", tmp_path / "ckpt", checkpoint_fresh=True)
    data = {"y": y, "sigma": s, what: new}
    np.testing.assert_allclose(again.popt, scipy_fit(x, data["y"], data["sigma"]), rtol=1e-6)


def test_data_changed_without_a_trace_on_disk_are_caught_in_the_first_pass(tmp_path):
    x, y, s = problem()
    data, ckpt = tmp_path / "d.zarr", tmp_path / "ckpt"
    write_zarr(data, x=x, y=y, sigma=s)
    whole = zarr_fit(data, tmp_path / "uninterrupted")
    part = zarr_fit(data, ckpt, max_nfev=2)                 # stopped by its pass budget
    assert part.nfev == 2 and part.status == 0
    rewrite_in_place(data / "y", y * 1.001, keep_file_times=True)   # the stat digest agrees
    with pytest.raises(DataChangedError, match=r"differ from the data checkpoint .*decay\.zarr "
                                               r"was written for .*checkpoint_fresh=True"):
        zarr_fit(data, ckpt)
    rewrite_in_place(data / "y", y, keep_file_times=True)   # the original data resume ...
    done = zarr_fit(data, ckpt)
    assert done.extras["checkpoint"]["resumed_at_pass"] == 2
    np.testing.assert_array_equal(done.popt, whole.popt)    # ... to the uninterrupted answer


MODEL_SOURCE = """\
import jax.numpy as jnp
import {helper}

K = 1.0
FUNC = jnp.exp


def model(x, a, k, c):
    return a * K * FUNC(-{helper}.rate(k) * x) + c
"""
HELPER_SOURCE = "def rate(k):\n    return {factor}k\n"


@pytest.fixture
def edited_model(tmp_path, monkeypatch):
    """A model in a module of its own that reads a constant, a global alias and a helper
    module; ``edit(case)`` changes one of them and returns how the optimum moves."""
    tag = tmp_path.name.replace("-", "_").replace("[", "_").replace("]", "_")
    helper, module = f"helper_{tag}", f"model_{tag}"
    (tmp_path / f"{helper}.py").write_text(HELPER_SOURCE.format(factor=""))
    (tmp_path / f"{module}.py").write_text(MODEL_SOURCE.format(helper=helper))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(module)

    def edit(case):
        if case == "module constant":
            mod.K = 2.0                                         # a -> a / 2
            return lambda p: np.array([p[0] / 2, p[1], p[2]])
        if case == "global alias":
            mod.FUNC = jnp.expm1                                # c -> c + a
            return lambda p: np.array([p[0], p[1], p[2] + p[0]])
        path = tmp_path / f"{helper}.py"
        path.write_text(HELPER_SOURCE.format(factor="2.0 * "))  # k -> k / 2
        os.utime(path, (time.time() + 5, time.time() + 5))      # a new mtime for the .pyc check
        importlib.reload(sys.modules[helper])
        return lambda p: np.array([p[0], p[1] / 2, p[2]])

    yield mod.model, edit
    for name in (helper, module):
        sys.modules.pop(name, None)


EDITS = ["module constant", "global alias", "helper module edited"]


@pytest.mark.parametrize("case", EDITS)
def test_edited_model_is_not_resumed(tmp_path, edited_model, case):
    model, edit = edited_model
    x, y, _ = problem()
    kw = dict(p0=P0, enable_checkpoints=True, checkpoint_dir=str(tmp_path / "ckpt"),
              checkpoint_name="m", ftol=1e-12, xtol=1e-12, gtol=1e-12)
    before = quiet_fit(model, x, y, **kw).popt
    moved = edit(case)
    with pytest.raises(CheckpointError, match="model: what it computes differs"):
        quiet_fit(model, x, y, **kw)
    after = quiet_fit(model, x, y, checkpoint_fresh=True, **kw).popt
    np.testing.assert_allclose(after, moved(before), rtol=1e-6)


def _tier_fit(model, tier, x, y):
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    if tier == "per-pixel":
        ds = xr.Dataset({"y": (("pixel", "t"), np.stack([y, 0.5 * y + 0.25]))},
                        coords={"t": x})
        out = ds.y.nlsq.fit("t", model, p0=dict(zip("akc", P0)), kwargs=tight)
        return out["curvefit_coefficients"].values[0]
    if tier == "standard":
        return quiet_fit(model, x, y, p0=P0, **tight).popt
    return quiet_fit(model, da.from_array(x, chunks=CHUNK), da.from_array(y, chunks=CHUNK),
                     p0=P0, tier=tier, **tight).popt


@pytest.mark.parametrize("case, tier", [(c, t) for c in EDITS for t in ("standard", "streaming")]
                         + [("helper module edited", t) for t in ("chunked", "per-pixel")])
def test_compiled_kernels_follow_an_edited_model(edited_model, case, tier):
    model, edit = edited_model
    x, y, _ = problem()
    before = _tier_fit(model, tier, x, y)               # compiles and caches its kernels
    np.testing.assert_allclose(before, scipy_fit(x, y), rtol=1e-6)
    moved = edit(case)
    np.testing.assert_allclose(_tier_fit(model, tier, x, y), moved(before), rtol=1e-6)


def test_model_identity_is_what_the_model_computes(tmp_path):
    from nlsq_dask.solver import ModelSpec

    def spec(f):
        return ModelSpec(f, ("a", "b"))

    def make(k):
        return lambda x, a, b: a * jnp.exp(-b * x) + k

    table = np.arange(3.0)
    assert spec(make(1.0)).identity == spec(make(1.0)).identity      # redefined, same
    assert spec(make(1.0)) == spec(make(1.0)) and len({spec(make(1.0)), spec(make(1.0))}) == 1
    assert spec(make(1.0)).identity != spec(make(1.5)).identity      # closure constant
    assert spec(lambda x, a, b: a * x + b + jnp.sum(table)).identity != \
        spec(lambda x, a, b: a * x + b + jnp.sum(table * 2)).identity  # closed-over array
    # the identity of a module's model is the same in every process (hash seeds differ)
    (tmp_path / "idmodel.py").write_text(textwrap.dedent("""\
        import jax.numpy as jnp
        from nlsq_dask.solver import ModelSpec
        MODES = {"alpha", "beta", "gamma"}
        def m(x, a, b):
            return a * jnp.exp(-b * x) if "beta" in MODES else a * x
        print(ModelSpec(m, ("a", "b")).identity)
        """))
    env = env_for_subprocess()
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    ids = {subprocess.run([sys.executable, str(tmp_path / "idmodel.py")], env={
        **env, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True,
        timeout=RUN_TIMEOUT).stdout for seed in ("1", "2")}
    assert len(ids) == 1 and len(ids.pop().strip()) == 64


# ------------------------------------------------------------------------ 3. two writers
@pytest.fixture
def kill_problem(tmp_path):
    data = tmp_path / "data.zarr"
    x = np.linspace(0.0, 10.0, 40_000)
    y = 3.0 * np.exp(-0.7 * x) + 0.5 + 0.01 * np.random.default_rng(0).standard_normal(x.size)
    g = zarr.open_group(str(data), mode="w")
    g.create_array("x", data=x, chunks=(4000,))
    g.create_array("y", data=y, chunks=(4000,))
    return data


def ckpt_script_fit(data, ckpt, **kw):
    """What ``tests/scripts/ckpt_fit.py`` computes, in this process."""
    import dask

    with dask.config.set(scheduler="threads"):
        return nlsq_dask.fit(expdecay, da.from_zarr(str(data / "x")), da.from_zarr(str(data / "y")),
                             p0=P0, tier="streaming", checkpoint_dir=str(ckpt), **kw)


def test_second_writer_is_refused_and_the_first_stays_exact(tmp_path, kill_problem):
    ckpt, out, go = tmp_path / "ckpt", tmp_path / "out.json", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-u", str(SCRIPTS / "ckpt_fit.py"), "--data", str(kill_problem),
         "--ckpt-dir", str(ckpt), "--out", str(out), "--wait-for", str(go)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_for_subprocess())
    try:
        lines = []
        for line in first.stdout:                       # until it holds after its first pass
            lines.append(line)
            if line.startswith("HOLDING"):
                break
        assert lines and lines[-1].startswith("HOLDING"), "".join(lines)
        with pytest.raises(CheckpointError, match=rf"in use by pid {first.pid} on .* two fits "
                                                  r"cannot write one store"):
            ckpt_script_fit(kill_problem, ckpt, enable_checkpoints=True)
        go.write_text("go")
        rest, _ = first.communicate(timeout=RUN_TIMEOUT)
        assert first.returncode == 0, "".join(lines) + rest
    finally:
        first.kill()
    survivor = json.loads(out.read_text())
    plain = ckpt_script_fit(kill_problem, tmp_path / "none")
    np.testing.assert_array_equal(survivor["popt"], plain.popt)       # exact
    again = ckpt_script_fit(kill_problem, ckpt, enable_checkpoints=True)  # the lock is free
    assert again.extras["checkpoint"]["resumed"] and again.extras["partitions_computed"] == 0
    np.testing.assert_array_equal(again.popt, plain.popt)


def test_lock_of_a_killed_writer_is_taken_over(tmp_path, caplog):
    script = textwrap.dedent(f"""\
        import os, signal
        from nlsq_dask.engines.checkpoint import CheckpointStore, fingerprint_problem
        fp = fingerprint_problem(model="0" * 64, param_names=["a", "b"], data=[])
        CheckpointStore.open({str(tmp_path / "ckpt")!r}, "fit1", fp)
        print(os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env_for_subprocess(), timeout=RUN_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    dead = int(proc.stdout.strip())
    assert json.loads((tmp_path / "ckpt" / "fit1.zarr.lock").read_text())["pid"] == dead
    with caplog.at_level(logging.INFO, logger="nlsq_dask"):
        store = CheckpointStore.open(tmp_path / "ckpt", "fit1", fingerprint_problem(
            model="0" * 64, param_names=["a", "b"], data=[]))
    assert "stale lock" in caplog.text and f"pid {dead}" in caplog.text
    store.close()


def test_another_thread_of_this_process_is_refused(tmp_path):
    opened, release = threading.Event(), threading.Event()

    def hold():
        with CheckpointStore.open(tmp_path / "ckpt", "fit1", fp()):
            opened.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert opened.wait(30)
        with pytest.raises(CheckpointError, match="in use by another thread of this process"):
            CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())
    finally:
        release.set()
        t.join()
    CheckpointStore.open(tmp_path / "ckpt", "fit1", fp()).close()   # free again


# ------------------------------------------------------------------------ 4. failures name the store
def _private_tmpfs_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=60)
    return probe.returncode == 0


@pytest.mark.skipif(not _private_tmpfs_works(),
                    reason="needs a private mount namespace (unshare -rm) to mount a small tmpfs")
def test_full_file_system(tmp_path):
    mnt = tmp_path / "small_fs"
    mnt.mkdir()
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt} && "
                                       f"exec {sys.executable} {SCRIPTS / 'ckpt_disk_full.py'} {mnt}"],
        capture_output=True, text=True, env=env_for_subprocess(), timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["budget_nfev"] == 2 and out["ballast_error"] == 28
    assert out["resume_error"].startswith(f"CheckpointError: checkpoint {mnt}/decay.zarr: writing ")
    assert "No space left on device [errno 28]" in out["resume_error"]
    assert "keeps its last complete state" in out["resume_error"]
    assert out["new_store_error"].startswith(f"CheckpointError: checkpoint {mnt}/other.zarr: "
                                             "writing a new store failed")
    assert "other.zarr" not in out["entries_after_failures"]     # no half-made store left
    assert not any(".partial-" in e for e in out["entries_after_failures"])
    # space again: the first store resumes from its last complete state, the other starts
    assert out["checkpoint"]["resumed"] and out["checkpoint"]["resumed_at_pass"] == 2
    assert out["status"] > 0 and out["other_resumed"] is False
    x = np.linspace(0.0, 10.0, 4000)                         # the script's data
    y = 3.0 * np.exp(-0.7 * x) + 0.5 + 0.01 * np.random.default_rng(3).standard_normal(x.size)
    np.testing.assert_allclose(out["popt"], scipy_fit(x, y), rtol=1e-6)


def test_file_size_limit_on_the_first_write_leaves_nothing(tmp_path):
    """A real write failure (the OS's file size limit, ``ulimit -f``) while the store is created."""
    script = textwrap.dedent(f"""\
        import json, os, resource, signal, warnings
        import numpy as np, jax.numpy as jnp, nlsq_dask
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))
        x = np.linspace(0, 10, 4000); y = 3 * np.exp(-0.7 * x) + 0.5
        try:
            nlsq_dask.fit(lambda x, a, k, c: a * jnp.exp(-k * x) + c, x, y, p0=[1, 0.1, 0],
                          enable_checkpoints=True, checkpoint_dir={str(tmp_path / "ckpt")!r},
                          checkpoint_name="decay")
            print(json.dumps(None))
        except Exception as exc:
            print(json.dumps(type(exc).__name__ + ": " + str(exc)))
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env_for_subprocess(), timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    err = json.loads(proc.stdout.strip().splitlines()[-1])
    assert err.startswith(f"CheckpointError: checkpoint {tmp_path / 'ckpt' / 'decay.zarr'}: "
                          "writing a new store failed"), err
    assert "[errno 27]" in err and "file size limit" in err and "Nothing was stored" in err
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["decay.zarr.lock"]
    x = np.linspace(0, 10, 4000)
    r = quiet_fit(expdecay, x, 3 * np.exp(-0.7 * x) + 0.5, p0=P0, enable_checkpoints=True,
                  checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_name="decay")
    assert r.extras["checkpoint"]["resumed"] is False
    np.testing.assert_allclose(r.popt, [3.0, 0.7, 0.5], rtol=1e-7)


def test_interrupted_creation_and_a_dead_writers_lock_are_cleaned_up(tmp_path):
    ckpt = tmp_path / "ckpt"
    (ckpt / "decay.zarr.partial-999999").mkdir(parents=True)
    (ckpt / "decay.zarr.partial-999999" / "zarr.json").write_text('{"zarr_fo')   # cut short
    (ckpt / "decay.zarr.lock").write_text(json.dumps({"pid": 999999, "host": "gone"}))
    x, y, _ = problem()
    r = quiet_fit(expdecay, x, y, p0=P0, enable_checkpoints=True, checkpoint_dir=str(ckpt),
                  checkpoint_name="decay")
    assert r.extras["checkpoint"]["resumed"] is False
    assert sorted(os.listdir(ckpt)) == ["decay.zarr", "decay.zarr.lock"]
    np.testing.assert_allclose(r.popt, scipy_fit(x, y), rtol=1e-6)


def test_name_too_long_for_the_file_system(tmp_path):
    x, y, _ = problem()
    with pytest.raises(CheckpointError, match=r"checkpoint name 'nnn.*is 300 bytes; this file "
                                              r"system allows checkpoint names of at most \d+"):
        nlsq_dask.fit(expdecay, x, y, p0=P0, enable_checkpoints=True, checkpoint_name="n" * 300,
                      checkpoint_dir=str(tmp_path / "ckpt"))
    assert os.listdir(tmp_path / "ckpt") == []


def _edit_layout(store, how):
    current = json.loads((store / "CURRENT.json").read_text())["state"]
    meta = store / "states" / current / "zarr.json"
    doc = json.loads(meta.read_text())
    layout = doc["attributes"]["scalars"]["layout"]
    if how == "field names swapped":
        layout[0][0], layout[1][0] = layout[1][0], layout[0][0]
    else:
        layout[0][2] = "<i8"
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize("how", ["field names swapped", "dtype flipped"])
def test_edited_state_layout_is_refused(tmp_path, how):
    x, y, _ = problem()
    kw = dict(p0=P0, enable_checkpoints=True, checkpoint_dir=str(tmp_path / "ckpt"),
              checkpoint_name="decay")
    quiet_fit(expdecay, x, y, **kw)
    _edit_layout(tmp_path / "ckpt" / "decay.zarr", how)
    with pytest.raises(CheckpointError, match=r"decay\.zarr is damaged: .*checksum mismatch"):
        quiet_fit(expdecay, x, y, **kw)
    r = quiet_fit(expdecay, x, y, checkpoint_fresh=True, **kw)
    np.testing.assert_allclose(r.popt, scipy_fit(x, y), rtol=1e-6)


# ------------------------------------------------------------------------ 5. the CLI: one line
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
    job_data(tmp_path)
    (tmp_path / "job.yaml").write_text(f"data:\n  path: d.zarr\n  x: t\n  y: y\n"
                                       f"model: {module}:f\np0: [1.0, 1.0]\noutput: out\n")
    assert cli.main(["fit", str(tmp_path / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error: cannot import model") and words in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_job_into_a_store_in_use_is_one_line(tmp_path, capsys, kill_problem):
    """The CLI's answer to a second writer: one line naming the holder, status 2."""
    from nlsq_dask.engines.store_files import StoreLock

    job = tmp_path / "job.yaml"
    job.write_text(f"data:\n  path: {kill_problem}\n  x: x\n  y: y\nmodel: exponential\n"
                   f"p0: [1.0, 0.1, 0.0]\noutput: {tmp_path / 'out'}\n"
                   f"fit:\n  enable_checkpoints: true\n  checkpoint_name: held\n"
                   f"  checkpoint_dir: {tmp_path / 'ck'}\n")
    (tmp_path / "ck").mkdir()
    held, release = threading.Event(), threading.Event()

    def hold():      # another thread of this process writes the store
        lock = StoreLock(str(tmp_path / "ck" / "held.zarr")).acquire()
        held.set()
        release.wait(60)
        lock.release()

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        code = cli.main(["fit", str(job)])
    finally:
        release.set()
        t.join()
    err = capsys.readouterr().err
    assert code == 2 and "held.zarr is in use by" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------ 6. YAML aliases
BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
workflow:
  goal: fast
  checkpoint_dir: *e
"""

BROKEN = "workflow:\n  goal: [fast\n"


@pytest.mark.parametrize("text, match", [(BOMB, "aliases .* are not allowed"),
                                         (BROKEN, "cannot parse")])
def test_bad_yaml_is_a_value_error_naming_the_file(tmp_path, text, match):
    path = tmp_path / "nlsq.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_yaml_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match=match):
        nlsq_dask.fit(lambda x, a: a * x, [1.0, 2.0], [2.0, 4.0], p0=[1.0], yaml_path=path)


@pytest.mark.parametrize("text", [BOMB, BROKEN])
def test_cli_info_with_a_bad_local_nlsq_yaml_is_one_line(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nlsq.yaml").write_text(text)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nlsq-dask: error:") and "Traceback" not in err


def test_cli_fit_with_aliases_in_the_job_file_is_one_line(tmp_path, capsys):
    (tmp_path / "job.yaml").write_text(BOMB.replace("workflow:\n  goal: fast\n  checkpoint_dir: *e\n",
                                                    "model: exponential\n"))
    assert cli.main(["fit", str(tmp_path / "job.yaml")]) == 2
    assert "aliases" in capsys.readouterr().err


def test_anchors_without_aliases_still_load(tmp_path):
    path = tmp_path / "nlsq.yaml"
    path.write_text("workflow:\n  goal: &g fast\n")
    assert load_yaml_config(path)["workflow"]["goal"] == "fast"


# ------------------------------------------------------------------------ 7. the tier is true
def test_checkpointed_fit_of_in_memory_data_runs_and_reports_chunked(tmp_path):
    x, y, s = problem()
    kw = dict(p0=P0, sigma=s, enable_checkpoints=True, checkpoint_dir=str(tmp_path / "ckpt"),
              checkpoint_name="decay")
    r = quiet_fit(expdecay, x, y, **kw)
    assert r.tier is WorkflowTier.CHUNKED and r.config.tier is WorkflowTier.CHUNKED
    assert any("checkpointing is enabled" in why for why in r.selection.reasons)
    assert [c["name"] for c in list_checkpoints(tmp_path / "ckpt")] == ["decay"]
    np.testing.assert_allclose(r.popt, scipy_fit(x, y, s), rtol=1e-6)
    again = quiet_fit(expdecay, x, y, **kw)
    assert again.extras["checkpoint"]["resumed"] and again.extras["partitions_computed"] == 0
    np.testing.assert_array_equal(again.popt, r.popt)
    plain = quiet_fit(expdecay, x, y, p0=P0, sigma=s)
    assert plain.tier is WorkflowTier.STANDARD and "checkpoint" not in plain.extras
