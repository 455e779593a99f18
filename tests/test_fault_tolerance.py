"""Fault tolerance of checkpointed and distributed fits, with real processes (no mocks).

1. SIGKILL of the client process mid-fit (random pass, random point within it), then a rerun that
   resumes: it redoes at most the lost pass and ends at exactly the uninterrupted answer.
2. SIGKILL of a LocalCluster worker while it runs a partition task: the nanny restarts it, the task
   is recomputed elsewhere and the fixed reduction tree gives the bit-identical answer.
3. A store written for another problem is refused, saying what differs, and left intact.
4. A damaged store is reported (naming its path), never resumed from; ``checkpoint_fresh=True``
   starts over and gives the right answer.
5. An unusable checkpoint_dir fails before the first pass, naming the path.
6. ``NLSQ_ENABLE_CHECKPOINTING`` / ``NLSQ_CHECKPOINT_DIR`` turn checkpoints on.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

jnp = pytest.importorskip("jax.numpy")
da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

import nlsq_dask
from nlsq_dask.engines.checkpoint import CheckpointError
from nlsq_dask.workflow import WorkflowTier

SCRIPT = Path(__file__).parent / "scripts" / "ckpt_fit.py"
PASS_RE = re.compile(r"^pass\s+(\d+) \|")
RUN_TIMEOUT = 240  # seconds for one subprocess fit (generous: shared CI machines)

# The kill-test problem: 2e5 points in 10 zarr chunks, 9 passes from p0 = (1, 0.1, 0).
KILL_N, KILL_PARTS = 200_000, 10


def expdecay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


# ---------------------------------------------------------------------------------------------
# 1. SIGKILL of the client process
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kill_data(tmp_path_factory):
    """A zarr dataset (x, y) and the uninterrupted fit of it."""
    root = tmp_path_factory.mktemp("kill_data")
    data = root / "data.zarr"
    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 10.0, KILL_N)
    y = 3.0 * np.exp(-0.7 * x) + 0.5 + 0.01 * rng.standard_normal(KILL_N)
    for name, v in (("x", x), ("y", y)):
        z = zarr.open_array(str(data / name), mode="w", shape=v.shape, chunks=(KILL_N // KILL_PARTS,),
                            dtype="f8")
        z[:] = v
    env = _subprocess_env(root / "jax_cache")
    import jax

    if jax.default_backend() == "cpu":  # same platform as the subprocesses: fit here (fast)
        import dask

        with dask.config.set(scheduler="threads"):
            r = nlsq_dask.fit(expdecay, da.from_zarr(str(data / "x")), da.from_zarr(str(data / "y")),
                              p0=[1.0, 0.1, 0.0], tier="streaming")
        ref = {"popt": r.popt.tolist(), "nfev": r.nfev, "status": r.status}
    else:  # accelerator here: the reference must run on the subprocesses' CPU platform
        out = root / "ref.json"
        proc = subprocess.run([sys.executable, "-u", str(SCRIPT), "--data", str(data), "--ckpt-dir",
                               str(root / "ref_ckpt"), "--out", str(out)], check=False, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ref = json.loads(out.read_text())
    assert ref["nfev"] >= 8 and ref["status"] > 0, ref
    return {"data": data, "env": env, "ref": ref}


def _subprocess_env(jax_cache):
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
               # the kill/resume runs share compiled solver code: faster restarts, same executables
               JAX_COMPILATION_CACHE_DIR=str(jax_cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.pop("NLSQ_ENABLE_CHECKPOINTING", None)
    env.pop("NLSQ_CHECKPOINT_DIR", None)
    return env


class FitProcess:
    """``ckpt_fit.py`` in a subprocess; a thread collects its output lines with their arrival time."""

    def __init__(self, data, ckpt_dir, out, env, *extra):
        self.out = Path(out)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(SCRIPT), "--data", str(data), "--ckpt-dir", str(ckpt_dir),
             "--out", str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env)
        self.lines: list[tuple[float, str]] = []
        self._q: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            item = (time.monotonic(), line.rstrip("\n"))
            self.lines.append(item)
            self._q.put(item)
        self._q.put(None)

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def passes(self) -> list[int]:
        return [int(m.group(1)) for _, line in self.lines if (m := PASS_RE.match(line))]

    def wait_for_pass(self, target: int, timeout: float = RUN_TIMEOUT) -> dict[int, float]:
        """Block until a 'pass N' line with N >= target; return {pass: arrival time} seen so far."""
        seen, deadline = {}, time.monotonic() + timeout
        while True:
            try:
                item = self._q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no 'pass {target}' line within {timeout} s:\n{self.text}")
            if item is None:
                pytest.fail(f"fit exited (rc={self.proc.wait()}) before pass {target}:\n{self.text}")
            m = PASS_RE.match(item[1])
            if m:
                seen[int(m.group(1))] = item[0]
                if int(m.group(1)) >= target:
                    return seen

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=60)

    def finish(self, timeout: float = RUN_TIMEOUT) -> dict:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"fit did not finish within {timeout} s:\n{self.text}")
        self._reader.join(timeout=60)
        assert rc == 0, f"rc={rc}\n{self.text}"
        return json.loads(self.out.read_text())


def _stored_progress(store: Path) -> tuple[int, int]:
    """``(pass of the current state, finished partitions stored for the pass after it)``, read from
    the files (a record counts only when complete, as the engine reads it)."""
    it = json.loads((store / "CURRENT.json").read_text())["iteration"]
    blocks = set()
    for pdir in (store / "passes").glob(f"pass{it:05d}-*"):
        for rec in pdir.iterdir():
            meta = rec / "zarr.json"
            if rec.is_dir() and meta.is_file():
                attrs = json.loads(meta.read_text()).get("attributes", {})
                if attrs.get("complete") is True:
                    blocks.update(attrs.get("blocks", [attrs.get("block_index")]))
    return it, len(blocks)


def _wait_for_stored_partition(fp: FitProcess, store: Path, after: int,
                               timeout: float = 60) -> tuple[int, int]:
    """Poll the store (while the fit writes it) until the state of pass ``after`` (or a later one) is
    current and a partition of the pass that follows it is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and fp.proc.poll() is None:
        try:
            progress = _stored_progress(store)
        except (OSError, ValueError):  # a file replaced while read: look again
            continue
        if progress[0] >= after and progress[1] > 0:
            return progress
        time.sleep(0.002)
    pytest.fail(f"no partition was stored within {timeout} s:\n{fp.text}")


@pytest.mark.slow
@pytest.mark.parametrize("seed, n_kills, when", [(2024, 1, "partition stored"), (7, 2, "random time")])
def test_sigkill_client_then_resume(kill_data, tmp_path, seed, n_kills, when):
    """Kill the fitting process at random passes, at a random time within a pass or right after one
    of its partitions is stored; each rerun resumes from the last stored state and partitions, redoes
    only the lost work, and ends at the exact answer of an uninterrupted fit."""
    rng = random.Random(seed)
    ref, ckpt_dir, out = kill_data["ref"], tmp_path / "ckpt", tmp_path / "result.json"
    store = ckpt_dir / "expdecay.zarr"
    # "partition stored": every finished partition is stored at once (the engine batches them by
    # default) and the kill follows the first stored partition of the pass after `target`: mid-pass
    extra = ("--flush-seconds", "0") if when == "partition stored" else ()
    targets = sorted(rng.sample(range(2, 6), n_kills))  # of 9 passes: every kill lands mid-fit
    last_logged = 0
    for target in targets:
        fp = FitProcess(kill_data["data"], ckpt_dir, out, kill_data["env"], *extra)
        seen = fp.wait_for_pass(target)
        if when == "partition stored":
            seen_at = _wait_for_stored_partition(fp, store, after=max(seen))
        else:
            ks = sorted(seen)
            pass_time = seen[ks[-1]] - seen[ks[-2]] if len(ks) > 1 else 0.5
            time.sleep(rng.random() * pass_time)  # somewhere in the state write or the next pass
        fp.kill()
        assert fp.proc.returncode == -signal.SIGKILL, fp.text
        assert not out.exists(), "the fit finished before the kill: the test did not interrupt it"
        last_logged = max(fp.passes())
        assert store.is_dir()
    stored_at, reusable = _stored_progress(store)
    if when == "partition stored":  # killed mid-pass with stored partitions (or just after that pass)
        assert reusable > 0 or stored_at > seen_at[0], (seen_at, stored_at, reusable)

    fp = FitProcess(kill_data["data"], ckpt_dir, out, kill_data["env"], *extra)
    res = fp.finish()
    info = (f"seed={seed} kill targets={targets} last pass logged={last_logged} stored state={stored_at} "
            f"stored partitions of the next pass={reusable}\n{fp.text}")
    ck = res["extras"]["checkpoint"]
    assert ck["path"] == str(store)
    assert ck["resumed"] is True, info
    resumed_at = ck["resumed_at_pass"]
    # the state of pass N is saved right after 'pass N' is logged: a kill in between loses one pass
    assert last_logged - 1 <= resumed_at <= last_logged and resumed_at == stored_at, info
    assert f"resuming {store} at pass {resumed_at}" in fp.text, info
    assert res["tier"] == WorkflowTier.STREAMING_CHECKPOINT.value
    assert res["nfev"] == ref["nfev"], info  # total passes, counting those before the resume
    n_parts = res["extras"]["n_partitions"]
    assert n_parts == KILL_PARTS
    # only the missing work was redone: the passes after the stored state, less the partitions of
    # the interrupted pass that were already stored (at most one pass of lost work)
    assert res["extras"]["partitions_computed"] == (res["nfev"] - resumed_at) * n_parts - reusable, info
    assert "skipping damaged partition" not in fp.text, info  # a killed write is half-written, not damaged
    np.testing.assert_allclose(res["popt"], ref["popt"], rtol=1e-10, atol=0, err_msg=info)


# ---------------------------------------------------------------------------------------------
# 2. SIGKILL of a dask worker
# ---------------------------------------------------------------------------------------------

class _PassWatcher(logging.Handler):
    """Records the arrival time of each 'pass N' log record of the nlsq_dask logger."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.times: dict[int, float] = {}
        self.cond = threading.Condition()

    def emit(self, record):
        m = PASS_RE.match(record.getMessage())
        if m:
            with self.cond:
                self.times[int(m.group(1))] = time.monotonic()
                self.cond.notify_all()

    def wait(self, n, timeout):
        with self.cond:
            return self.cond.wait_for(lambda: n in self.times, timeout=timeout)


@pytest.mark.slow
def test_sigkill_worker_mid_pass_gives_identical_result():
    """One of two worker processes is SIGKILLed while it runs a partition task of pass 3; the nanny
    restarts it, the lost tasks are recomputed, and popt is bit-identical to an uninterrupted run."""
    distributed = pytest.importorskip("distributed")

    def model(x, a, k, c):  # local: pickled by value to the workers
        return a * jnp.exp(-k * x) + c

    # generated lazily, so a STREAMING pass recomputes every partition on the workers
    n, parts = 600_000, 20
    x = da.linspace(0.0, 10.0, n, chunks=n // parts)
    y = 3.0 * da.exp(-0.7 * x) + 0.5 + 0.01 * da.sin(1.0e4 * x)
    kw = {"p0": [1.0, 0.1, 0.0], "tier": "streaming"}

    log = logging.getLogger("nlsq_dask")
    watcher, old_level = _PassWatcher(), log.level
    log.addHandler(watcher)
    log.setLevel(logging.INFO)
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            ref = nlsq_dask.fit(model, x, y, client=client, **kw)  # also warms both workers up
            assert ref.tier is WorkflowTier.STREAMING and ref.nfev >= 5
            pids = client.run(os.getpid)  # {worker address: pid}
            watcher.times.clear()
            killed, errors, fit_done = {}, [], threading.Event()

            def killer():
                try:
                    if not watcher.wait(2, timeout=RUN_TIMEOUT):
                        raise AssertionError("pass 2 was never logged")
                    deadline = time.monotonic() + 60
                    while not fit_done.is_set() and time.monotonic() < deadline:
                        busy = {w: keys for w, keys in client.processing().items()
                                if any("nlsq-stats" in str(k) for k in keys)}
                        if busy:  # a worker is running a partition task right now: kill it
                            addr = min(busy)
                            os.kill(pids[addr], signal.SIGKILL)
                            killed.update(addr=addr, pid=pids[addr], at=time.monotonic(),
                                          passes_logged=max(watcher.times))
                            return
                        time.sleep(0.005)
                except Exception as e:  # noqa: BLE001 (reported by the test thread)
                    errors.append(e)

            t = threading.Thread(target=killer, daemon=True)
            t.start()
            try:
                r = nlsq_dask.fit(model, x, y, client=client, **kw)
            finally:
                fit_done.set()
                t.join(timeout=60)
            end = time.monotonic()
            assert not errors, errors
            assert killed, "no worker was killed during the fit"
            assert killed["at"] < end and killed["passes_logged"] < r.nfev, killed

            # the scheduler lost the worker with partition tasks in flight, and the nanny restarted it
            events = [e for _, e in client.get_events(killed["addr"])
                      if isinstance(e, dict) and e.get("action") == "remove-worker"]
            assert events, client.get_events(killed["addr"])
            lost = [*events[-1].get("processing-tasks", ()), *events[-1].get("lost-computed-tasks", ())]
            assert any("nlsq-" in str(k) for k in lost), events
            client.wait_for_workers(2, timeout=120)
            new_pids = client.run(os.getpid)
            assert killed["pid"] not in new_pids.values() and len(new_pids) == 2

            assert r.nfev == ref.nfev and r.status == ref.status
            np.testing.assert_array_equal(r.popt, ref.popt)  # bit-identical, not merely close
            np.testing.assert_array_equal(r.pcov, ref.pcov)
            assert r.extras["partitions_computed"] == r.nfev * parts  # counted once per pass
    finally:
        log.removeHandler(watcher)
        log.setLevel(old_level)


# ---------------------------------------------------------------------------------------------
# 3.-6. Stores of other problems, damaged stores, unusable directories, environment switch
# ---------------------------------------------------------------------------------------------

SMALL_N, SMALL_CHUNK, SMALL_P0 = 1000, 500, [2.9, 0.7, 0.5]


def _small_xy(n=SMALL_N, seed=1):
    x = np.linspace(0.0, 10.0, n)
    y = 3.0 * np.exp(-0.7 * x) + 0.5 + 0.01 * np.random.default_rng(seed).standard_normal(n)
    return x, y


def _small_fit(ckpt_dir, x=None, y=None, model=expdecay, **kw):
    if x is None:
        x, y = _small_xy()
    kw = {"p0": SMALL_P0, "checkpoint_dir": ckpt_dir, "enable_checkpoints": True, **kw}
    return nlsq_dask.fit(model, da.from_array(x, chunks=SMALL_CHUNK), da.from_array(y, chunks=SMALL_CHUNK),
                         tier="streaming", **kw)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """A finished checkpointed fit of the small problem (to copy) and its result."""
    ckpt_dir = tmp_path_factory.mktemp("small_store")
    r = _small_fit(ckpt_dir)
    assert r.tier is WorkflowTier.STREAMING_CHECKPOINT and r.extras["checkpoint"]["resumed"] is False
    plain = nlsq_dask.fit(expdecay, *[da.from_array(a, chunks=SMALL_CHUNK) for a in _small_xy()],
                          p0=SMALL_P0, tier="streaming")
    np.testing.assert_array_equal(r.popt, plain.popt)  # checkpointing does not change the numbers
    return ckpt_dir, r


@pytest.fixture
def store_copy(small_store, tmp_path):
    src, r = small_store
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst, dst / "expdecay.zarr", r


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


def other_model_same_name(x, a, k, c):
    return a * jnp.exp(-k * x) + 2.0 * c


_x, _y = _small_xy()
OTHER_PROBLEMS = {
    "data shape": ({"x": _small_xy(1200)[0], "y": _small_xy(1200)[1]},
                   r"data\[0\]\.shape: stored \[1000\] vs now \[1200\]"),
    "data values": ({"x": _x, "y": _y + 1e-3}, r"data\[1\]\.token: stored '[^']+' vs now '[^']+'"),
    "model body": ({"model": other_model_same_name, "checkpoint_name": "expdecay"}, r"model: what it computes differs"),
    "parameter names": ({"param_names": ("amp", "rate", "offset")},
                        r"param_names: stored \['a', 'k', 'c'\] vs now \['amp', 'rate', 'offset'\]"),
    "bounds": ({"bounds": ([0.0, 0.0, -1.0], [10.0, 5.0, 5.0])},
               r"bounds\[0\]: stored \['-inf', '-inf', '-inf'\] vs now \[0\.0, 0\.0, -1\.0\]"),
}


@pytest.mark.parametrize("what", sorted(OTHER_PROBLEMS))
def test_store_of_another_problem_is_refused(store_copy, what):
    ckpt_dir, store, ref = store_copy
    kw, match = OTHER_PROBLEMS[what]
    before = _snapshot(store)
    with pytest.raises(CheckpointError, match=match) as exc:
        _small_fit(ckpt_dir, **kw)
    msg = str(exc.value)
    assert "written for another problem" in msg and str(store) in msg and "checkpoint_fresh=True" in msg
    assert isinstance(exc.value, ValueError)
    assert _snapshot(store) == before  # refused without touching the store
    again = _small_fit(ckpt_dir)  # ... which the original problem still resumes
    assert again.extras["checkpoint"]["resumed"] is True and again.extras["partitions_computed"] == 0
    np.testing.assert_array_equal(again.popt, ref.popt)


def _current_state(store):
    return store / "states" / json.loads((store / "CURRENT.json").read_text())["state"]


def _drop_chunk(store):
    chunks = [p for p in sorted(_current_state(store).rglob("*")) if p.is_file() and p.name != "zarr.json"]
    assert chunks, "the state record has no chunk files"
    chunks[0].unlink()


def _garbage(path):
    def damage(store):
        (store / path).write_bytes(b'{"zarr_format": 3, \x00\xff garbage')
    return damage


def _garbage_state_meta(store):
    (_current_state(store) / "zarr.json").write_text("not json at all")


def _drop_complete(store):
    meta = _current_state(store) / "zarr.json"
    doc = json.loads(meta.read_text())
    assert doc["attributes"].pop("complete") is True
    meta.write_text(json.dumps(doc))


def _pointer_to_missing(store):
    cur = store / "CURRENT.json"
    doc = json.loads(cur.read_text())
    doc["state"] = "999"
    cur.write_text(json.dumps(doc))


DAMAGE = {
    "state chunk deleted": (_drop_chunk, r"checksum mismatch"),
    "root zarr.json garbage": (_garbage("zarr.json"), r"is damaged"),
    "state zarr.json garbage": (_garbage_state_meta, r"metadata or data unreadable"),
    "state not complete": (_drop_complete, r"half-written \(no 'complete' mark\)"),
    "CURRENT.json to missing state": (_pointer_to_missing, r"states/999: missing or half-written"),
    "CURRENT.json garbage": (_garbage("CURRENT.json"), r"CURRENT\.json is damaged"),
}


@pytest.mark.parametrize("what", sorted(DAMAGE))
def test_damaged_store_is_reported_and_fresh_restarts(store_copy, what):
    ckpt_dir, store, ref = store_copy
    damage, match = DAMAGE[what]
    damage(store)
    with pytest.raises(CheckpointError, match=match) as exc:
        _small_fit(ckpt_dir)
    assert str(store) in str(exc.value) and "fresh=True" in str(exc.value)
    # checkpoint_fresh=True discards it and fits from p0, to the uninterrupted answer
    r = _small_fit(ckpt_dir, checkpoint_fresh=True)
    assert r.extras["checkpoint"] == {"path": str(store), "resumed": False, "resumed_at_pass": None}
    assert r.nfev == ref.nfev and r.extras["partitions_computed"] == r.nfev * 2
    np.testing.assert_array_equal(r.popt, ref.popt)
    # ... and leaves a sound store that the next run resumes
    again = _small_fit(ckpt_dir)
    assert again.extras["checkpoint"]["resumed"] is True and again.extras["partitions_computed"] == 0
    np.testing.assert_array_equal(again.popt, ref.popt)


def test_foreign_zarr_group_is_never_deleted(tmp_path):
    """A zarr group that is not an nlsq_dask checkpoint is refused, even with checkpoint_fresh=True."""
    foreign = tmp_path / "expdecay.zarr"
    g = zarr.open_group(str(foreign), mode="w")
    g.create_array("precious", data=np.arange(5.0))
    before = _snapshot(foreign)
    for fresh in (False, True):
        with pytest.raises(CheckpointError, match="not an nlsq_dask checkpoint") as exc:
            _small_fit(tmp_path, checkpoint_fresh=fresh)
        assert str(foreign) in str(exc.value)
    assert _snapshot(foreign) == before


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_unwritable_checkpoint_dir_fails_before_first_pass(tmp_path, where):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file")
    ckpt_dir = blocker / "ckpt" if where == "under a file" else blocker
    loads = []

    def load(block):  # counts partition reads: a pass would call it
        loads.append(len(block))
        return block

    x, y = _small_xy()
    dx = da.from_array(x, chunks=SMALL_CHUNK).map_blocks(load, dtype=float, meta=np.empty(0))
    dy = da.from_array(y, chunks=SMALL_CHUNK)
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=re.escape(str(ckpt_dir)) + ".*not writable"):
        nlsq_dask.fit(expdecay, dx, dy, p0=SMALL_P0, tier="streaming", enable_checkpoints=True,
                      checkpoint_dir=ckpt_dir)
    assert loads == [], "a pass ran before the checkpoint directory was checked"
    assert blocker.read_text() == "a regular file"
    assert time.monotonic() - t0 < 60


def test_environment_turns_checkpoints_on(tmp_path, monkeypatch):
    ckpt_dir = tmp_path / "env_ckpt"
    monkeypatch.chdir(tmp_path)  # no stray ./nlsq.yaml
    monkeypatch.setenv("NLSQ_ENABLE_CHECKPOINTING", "1")
    monkeypatch.setenv("NLSQ_CHECKPOINT_DIR", str(ckpt_dir))
    x, y = (da.from_array(a, chunks=SMALL_CHUNK) for a in _small_xy())
    r = nlsq_dask.fit(expdecay, x, y, p0=SMALL_P0, tier="streaming")
    store = ckpt_dir / "expdecay.zarr"
    assert r.tier is WorkflowTier.STREAMING_CHECKPOINT
    assert store.is_dir() and (store / "CURRENT.json").is_file()
    assert r.extras["checkpoint"] == {"path": str(store), "resumed": False, "resumed_at_pass": None}
    again = nlsq_dask.fit(expdecay, x, y, p0=SMALL_P0, tier="streaming")
    assert again.extras["checkpoint"]["resumed"] is True and again.extras["partitions_computed"] == 0
    np.testing.assert_array_equal(again.popt, r.popt)
    monkeypatch.setenv("NLSQ_ENABLE_CHECKPOINTING", "0")
    off = nlsq_dask.fit(expdecay, x, y, p0=SMALL_P0, tier="streaming")
    assert off.tier is WorkflowTier.STREAMING and "checkpoint" not in off.extras


def test_resume_continues_a_fit_stopped_by_max_nfev(tmp_path):
    """A job's pass budget ran out (max_nfev); the next job with a larger budget goes on from the
    stored state to the uninterrupted answer."""
    from nlsq_dask.api import FitWarning

    with pytest.warns(FitWarning):
        first = _small_fit(tmp_path, max_nfev=2)
    assert first.status == 0 and first.nfev == 2
    plain = nlsq_dask.fit(expdecay, *[da.from_array(a, chunks=SMALL_CHUNK) for a in _small_xy()],
                          p0=SMALL_P0, tier="streaming")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)  # the bug: the stale result warns again
        again = _small_fit(tmp_path)
    assert again.extras["checkpoint"]["resumed"] is True
    assert (again.status, again.nfev) == (plain.status, plain.nfev)
    np.testing.assert_array_equal(again.popt, plain.popt)


def test_resume_with_tighter_tolerances_goes_on(tmp_path):
    """A fit converged with loose tolerances; rerun with tighter ones it continues from the
    stored state (no silent stale answer) to what an uninterrupted tight fit gives."""
    from scipy.optimize import curve_fit

    loose = dict(ftol=1e-3, xtol=1e-3, gtol=1e-3)
    tight = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)
    first = _small_fit(tmp_path, **loose)
    same = _small_fit(tmp_path, **loose)             # same tolerances: the stored answer
    assert same.extras["partitions_computed"] == 0
    np.testing.assert_array_equal(same.popt, first.popt)
    again = _small_fit(tmp_path, **tight)
    plain = nlsq_dask.fit(expdecay, *[da.from_array(a, chunks=SMALL_CHUNK) for a in _small_xy()],
                          p0=SMALL_P0, tier="streaming", **tight)
    assert again.extras["checkpoint"]["resumed"] is True and again.extras["partitions_computed"] > 0
    assert again.nfev > first.nfev and (again.status, again.nfev) == (plain.status, plain.nfev)
    np.testing.assert_array_equal(again.popt, plain.popt)
    ref, _ = curve_fit(lambda x, a, k, c: a * np.exp(-k * x) + c, *_small_xy(), p0=SMALL_P0,
                       **tight)
    np.testing.assert_allclose(again.popt, ref, rtol=1e-8)
    assert np.max(np.abs(first.popt - ref) / np.abs(ref)) > 1e-8   # the loose answer was not it
