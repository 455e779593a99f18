"""Checkpoint store: round trips, atomic pointer, fingerprints, damage detection (real files, no dask)."""
import json
import logging
import math
import os

import numpy as np
import pytest

from nlsq_dask.engines.checkpoint import (
    CheckpointError,
    CheckpointStore,
    diff_fingerprints,
    fingerprint_problem,
    inspect_checkpoint,
    list_checkpoints,
)


# what the store is told a model computes (ModelSpec.identity; see test_model_identity.py)
MODEL_EXP, MODEL_SIN = "1" * 64, "2" * 64


DATA = [{"name": "x", "shape": [100], "chunks": [50], "dtype": "float64", "token": "tx"},
        {"name": "y", "shape": [100], "chunks": [50], "dtype": "float64", "token": "ty"}]


def fp(**kw):
    args = dict(model=MODEL_EXP, param_names=["a", "b"], data=DATA, bounds=([0, -np.inf], [np.inf, 5.0]))
    args.update(kw)
    return fingerprint_problem(**args)


def state(k=0):
    arrays = {"p": np.array([1.0, 2.0]) + k, "H": np.eye(2) * (k + 1), "nfev": np.array(k, dtype=np.int32)}
    scalars = {"cost": 0.5 / (k + 1), "damping": 1e-3, "status": "running", "done": False,
               "history": [1.0, math.inf, math.nan], "nan": math.nan, "minf": -math.inf, "s_inf": "inf"}
    return arrays, scalars


@pytest.fixture
def store(tmp_path):
    return CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())


def check_state(loaded, k):
    arrays, scalars = state(k)
    it, a, s = loaded
    assert it == k
    assert set(a) == set(arrays)
    for name in arrays:
        np.testing.assert_array_equal(a[name], arrays[name])
    assert a["p"].dtype == np.float64 and a["nfev"].dtype == np.int64 and a["nfev"].shape == ()
    assert s["history"][:2] == [1.0, math.inf] and math.isnan(s["history"][2]) and math.isnan(s["nan"])
    assert s["minf"] == -math.inf and s["s_inf"] == "inf" and s["done"] is False
    assert {k: v for k, v in s.items() if k not in ("history", "nan")} == \
        {k: v for k, v in scalars.items() if k not in ("history", "nan")}


def state_dir(store):
    with open(os.path.join(store.path, "CURRENT.json")) as f:
        return os.path.join(store.path, "states", json.load(f)["state"])


# ---------------------------------------------------------------- round trips
def test_state_round_trip_and_resume(tmp_path, store):
    assert not store.resumed and store.load_state() is None
    store.save_config({"tier": "STREAMING_CHECKPOINT", "ftol": 1e-8, "max_nfev": None, "x": (1, 2)})
    for k in range(4):
        store.save_state(k, *state(k))
        check_state(store.load_state(), k)
    states = os.path.join(store.path, "states")
    assert sorted(d for d in os.listdir(states) if os.path.isdir(os.path.join(states, d))) == ["2", "3"]
    again = CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())
    assert again.resumed
    check_state(again.load_state(), 3)
    assert inspect_checkpoint(again.path)["config"] == {"tier": "STREAMING_CHECKPOINT", "ftol": 1e-8, "max_nfev": None, "x": [1, 2]}


def test_same_iteration_saved_twice_never_overwrites_current(store):
    store.save_state(5, *state(5))
    arrays, scalars = state(5)
    arrays["p"] = arrays["p"] * 10
    store.save_state(5, arrays, scalars)
    np.testing.assert_array_equal(store.load_state()[1]["p"], arrays["p"])
    store.save_state(5, *state(5))
    check_state(store.load_state(), 5)


def test_non_numeric_and_non_json_rejected(store):
    with pytest.raises(TypeError):
        store.save_state(0, {"p": np.array(["a"], dtype=object)}, {})
    with pytest.raises(TypeError):
        store.save_state(0, {"p": np.ones(2)}, {"f": object()})
    with pytest.raises(ValueError):
        store.save_state(0, {"../p": np.ones(2)}, {})


def test_partitions_round_trip_and_clear(store):
    stats = lambda i: {"n": np.array(10 * i), "cost": np.array(0.5 * i), "g": np.arange(2.0) + i,  # noqa: E731
                       "H": np.eye(2) * i}
    for i in (0, 2, 5):
        store.save_partition("it0001-p0003", i, stats(i))
    store.save_partition("it0002-p0004", 0, stats(7))
    got = store.load_partitions("it0001-p0003")
    assert sorted(got) == [0, 2, 5]
    for i in got:
        for k, v in stats(i).items():
            np.testing.assert_array_equal(got[i][k], v)
    assert store.load_partitions("nope") == {}
    assert store.info()["n_partitions"] == 4
    store.clear_passes(keep="it0002-p0004")
    assert store.load_partitions("it0001-p0003") == {}
    assert sorted(store.load_partitions("it0002-p0004")) == [0]
    store.clear_passes()
    assert store.info()["n_partitions"] == 0


def test_partitions_resume_flag(tmp_path, store):
    store.save_partition("it0000-p0000", 3, {"n": np.array(1)})
    assert CheckpointStore.open(tmp_path / "ckpt", "fit1", fp()).resumed


def test_half_written_and_corrupt_partitions_skipped(store, caplog):
    for i in range(3):
        store.save_partition("pk", i, {"g": np.arange(4.0) + i})
    base = os.path.join(store.path, "passes", "pk")
    with open(os.path.join(base, "0", "zarr.json")) as f:
        meta = json.load(f)
    del meta["attributes"]["complete"]
    with open(os.path.join(base, "0", "zarr.json"), "w") as f:
        json.dump(meta, f)
    os.remove(os.path.join(base, "1", "g", "c", "0"))  # complete but data lost
    os.makedirs(os.path.join(base, "7"))  # crash right after mkdir
    with caplog.at_level(logging.WARNING, logger="nlsq_dask"):
        got = store.load_partitions("pk")
    assert sorted(got) == [2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "checksum" in warnings[0] and os.path.join(base, "1") in warnings[0]
    store.save_partition("pk", 0, {"g": np.arange(4.0)})  # recomputed block overwrites the half-written one
    assert sorted(store.load_partitions("pk")) == [0, 2]


# ---------------------------------------------------------------- atomic pointer
def test_crash_before_pointer_switch_keeps_old_state(store, monkeypatch):
    import nlsq_dask.engines.checkpoint as ck

    store.save_state(1, *state(1))

    def crash(path, obj):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ck, "write_json_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save_state(2, *state(2))
    monkeypatch.undo()
    assert os.path.isdir(os.path.join(store.path, "states", "2"))  # new group fully written ...
    check_state(store.load_state(), 1)  # ... but the pointer still names the old one
    store.save_state(2, *state(2))
    check_state(store.load_state(), 2)


def test_crash_before_first_pointer_means_no_state(store, monkeypatch):
    import nlsq_dask.engines.checkpoint as ck

    monkeypatch.setattr(ck, "write_json_atomic", lambda p, o: (_ for _ in ()).throw(SystemExit(1)))
    with pytest.raises(SystemExit):
        store.save_state(0, *state(0))
    monkeypatch.undo()
    assert store.load_state() is None


# ---------------------------------------------------------------- fingerprints
@pytest.mark.parametrize("change, expect", [
    (dict(data=[DATA[0], {**DATA[1], "shape": [200]}]), "data[1].shape: stored [100] vs now [200]"),
    (dict(data=[DATA[0], {**DATA[1], "token": "other"}]), "data[1].token"),
    (dict(data=DATA[:1]), "data: stored 2 entries vs now 1"),
    (dict(model=MODEL_SIN), "model: what it computes differs"),
    (dict(param_names=["a", "c"]), "param_names: stored ['a', 'b'] vs now ['a', 'c']"),
    (dict(bounds=([0, -np.inf], [np.inf, 6.0])), "bounds[1]: stored ['inf', 5.0] vs now ['inf', 6.0]"),
    (dict(loss="soft_l1"), "loss: stored 'linear' vs now 'soft_l1'"),
    (dict(extra={"x0": [1, 2]}), "extra: stored None vs now {'x0': [1, 2]}"),
])
def test_fingerprint_mismatch_refused(tmp_path, store, change, expect):
    store.save_state(0, *state(0))
    with pytest.raises(CheckpointError) as err:
        CheckpointStore.open(tmp_path / "ckpt", "fit1", fp(**change))
    msg = str(err.value)
    assert expect in msg and store.path in msg and "fresh=True" in msg
    assert diff_fingerprints(fp(), fp(**change))


def test_fingerprint_is_json_and_stable():
    f = fp()
    assert json.loads(json.dumps(f, allow_nan=False)) == f
    assert f["bounds"] == [[0.0, "-inf"], ["inf", 5.0]]
    assert fp() == f and diff_fingerprints(f, fp()) == []
    assert fp(bounds=(-np.inf, np.inf))["bounds"] == [["-inf", "-inf"], ["inf", "inf"]]
    with pytest.raises(TypeError, match="identity digest"):
        fp(model=lambda x, a: a * x)


# ---------------------------------------------------------------- damage
def test_deleted_state_chunk_detected(tmp_path, store):
    store.save_state(3, *state(3))
    os.remove(os.path.join(state_dir(store), "p", "c", "0"))
    with pytest.raises(CheckpointError, match="checksum mismatch") as err:
        CheckpointStore.open(tmp_path / "ckpt", "fit1", fp()).load_state()
    assert store.path in str(err.value) and "fresh=True" in str(err.value)


def test_deleted_state_group_detected(store):
    import shutil

    store.save_state(3, *state(3))
    shutil.rmtree(state_dir(store))
    with pytest.raises(CheckpointError, match="missing or half-written"):
        store.load_state()


def test_half_written_state_detected(store):
    store.save_state(3, *state(3))
    meta_path = os.path.join(state_dir(store), "zarr.json")
    with open(meta_path) as f:
        meta = json.load(f)
    del meta["attributes"]["complete"]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    with pytest.raises(CheckpointError, match="half-written"):
        store.load_state()


def test_garbage_state_metadata_and_pointer_detected(store):
    store.save_state(3, *state(3))
    with open(os.path.join(state_dir(store), "zarr.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        store.load_state()
    with open(os.path.join(store.path, "CURRENT.json"), "w") as f:
        f.write("garbage")
    with pytest.raises(CheckpointError, match="CURRENT.json"):
        store.load_state()


def test_garbage_root_metadata_is_damaged_and_fresh_recovers(tmp_path, store):
    store.save_state(3, *state(3))
    with open(os.path.join(store.path, "zarr.json"), "w") as f:
        f.write("\x00garbage")
    with pytest.raises(CheckpointError, match="damaged") as err:
        CheckpointStore.open(tmp_path / "ckpt", "fit1", fp())
    assert store.path in str(err.value) and "checkpoint_fresh=True" in str(err.value)
    new = CheckpointStore.open(tmp_path / "ckpt", "fit1", fp(), fresh=True)
    assert not new.resumed and new.load_state() is None


@pytest.mark.parametrize("kw", [dict(fresh=True), dict(resume=False)])
def test_fresh_or_no_resume_starts_over(tmp_path, store, kw):
    store.save_state(1, *state(1))
    store.save_partition("pk", 0, {"g": np.ones(2)})
    new = CheckpointStore.open(tmp_path / "ckpt", "fit1", fp(param_names=["u", "v"]), **kw)
    assert not new.resumed and new.load_state() is None and new.load_partitions("pk") == {}
    assert new.fingerprint["param_names"] == ["u", "v"]


def test_foreign_zarr_group_is_never_deleted(tmp_path):
    import zarr

    zarr.open_group(tmp_path / "fitx.zarr", mode="w").create_array("data", data=np.ones(3))
    for kw in ({}, {"fresh": True}):
        with pytest.raises(CheckpointError, match="not an nlsq_dask checkpoint") as err:
            CheckpointStore.open(tmp_path, "fitx", fp(), **kw)
        assert str(tmp_path / "fitx.zarr") in str(err.value)
    assert os.path.exists(tmp_path / "fitx.zarr" / "data")


def test_unwritable_checkpoint_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    target = blocker / "ckpts"
    with pytest.raises(CheckpointError, match="not writable") as err:
        CheckpointStore.open(target, "fit1", fp())
    assert str(target) in str(err.value)


# ---------------------------------------------------------------- listing
def test_list_and_inspect(tmp_path, store):
    store.save_config({"tier": "streaming_checkpoint", "ftol": math.nan})
    store.save_state(4, *state(4))
    store.save_partition("it0005-p0001", 0, {"g": np.ones(2)})
    other = CheckpointStore.open(tmp_path / "ckpt", "fit2", fp())
    other.save_state(0, *state(0))
    os.remove(os.path.join(state_dir(other), "zarr.json"))
    broken = tmp_path / "ckpt" / "fit3.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text("nope")
    (tmp_path / "ckpt" / "unrelated").mkdir()

    infos = {i["name"]: i for i in list_checkpoints(tmp_path / "ckpt")}
    assert sorted(infos) == ["fit1", "fit2", "fit3"]
    i1 = infos["fit1"]
    assert i1["iteration"] == 4 and i1["cost"] == pytest.approx(0.1) and i1["n_partitions"] == 1
    assert i1["fingerprint"]["param_names"] == ["a", "b"] and "error" not in i1
    assert i1["created"] and i1["updated"] and i1["path"] == store.path
    assert "error" in infos["fit2"] and "error" in infos["fit3"]
    assert list_checkpoints(tmp_path / "missing") == []

    full = inspect_checkpoint(store.path)
    assert math.isnan(full["config"]["ftol"]) and full["config"]["tier"] == "streaming_checkpoint"
    assert full["fingerprint"] == fp() and full["iteration"] == 4
    assert store.info()["iteration"] == 4
    with pytest.raises(CheckpointError, match="fit3.zarr"):
        inspect_checkpoint(broken)
    with pytest.raises(CheckpointError, match="not an nlsq_dask checkpoint"):
        inspect_checkpoint(tmp_path / "nowhere.zarr")
