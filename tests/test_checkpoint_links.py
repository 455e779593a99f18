"""Nothing the package deletes or replaces may be reached through a symbolic link.

Real stores, real folders and real symlinks (no mocks). Each case builds a "victim"
folder outside the store and points a link at it; the package must refuse with an error
naming the link, and the victim must be intact afterwards (issue 14, item 1).
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest

import nlsq_dask
from nlsq_dask.engines.checkpoint import CheckpointError, CheckpointStore, fingerprint_problem

DATA = [{"name": "x", "shape": [100], "chunks": [50], "dtype": "float64", "token": "tx"}]


def model(x, a, b):
    return a * jnp.exp(-b * x)


def fp():
    return fingerprint_problem(model=model, param_names=["a", "b"], data=DATA)


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


def test_fit_with_checkpoint_fresh_on_a_link_keeps_the_target(tmp_path):
    v = victim(tmp_path)
    (tmp_path / "ckpt").mkdir()
    os.symlink(v, tmp_path / "ckpt" / "decay.zarr")
    x = np.linspace(0, 4, 400)
    with pytest.raises(CheckpointError, match="symbolic link"):
        nlsq_dask.fit(model, x, 2 * np.exp(-0.5 * x), p0=[1.0, 1.0], tier="streaming",
                      enable_checkpoints=True, checkpoint_dir=str(tmp_path / "ckpt"),
                      checkpoint_name="decay", checkpoint_fresh=True)
    assert intact(v)


@pytest.mark.parametrize("what", ["result.zarr", "output folder", "output file"])
def test_cli_output_links_and_files_are_refused_before_the_fit(tmp_path, capsys, what):
    import zarr

    from nlsq_dask import cli

    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    x = np.linspace(0, 4, 400)
    g.create_array("t", data=x, chunks=(100,))
    g.create_array("y", data=2 * np.exp(-0.5 * x) + 0.1, chunks=(100,))
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
