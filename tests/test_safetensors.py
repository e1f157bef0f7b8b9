"""Models and checkpoints as safetensors files: chosen by the extension,
the same arrays and checks as the npz archive."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs


def trained(optimizer=None):
    X, y = blobs(n=120, f=10, c=3, seed=1)
    model = sm.SparseMLP([10, 24, 16, 3], epsilon=4, seed=2)
    model.fit(X, y, epochs=3, batch_size=16, verbose=0, optimizer=optimizer)
    return model, X, y


@pytest.mark.parametrize("optimizer", [None, "adam"])
def test_a_safetensors_file_holds_the_same_model_as_the_npz(tmp_path, optimizer):
    model, X, y = trained(optimizer)
    model.save(tmp_path / "m.safetensors")
    model.save(tmp_path / "m.npz")
    a, b = sm.SparseMLP.load(tmp_path / "m.safetensors"), sm.SparseMLP.load(tmp_path / "m.npz")
    assert_same_training_state(a, b)
    np.testing.assert_array_equal(a.predict_proba(X), model.predict_proba(X))
    assert a.history == model.history
    # and they train on identically (optimizer state, random state)
    a.fit(X, y, epochs=2, verbose=0)
    b.fit(X, y, epochs=2, verbose=0)
    assert_same_training_state(a, b)


def test_the_file_is_plain_safetensors_with_named_tensors(tmp_path):
    model, _, _ = trained("adam")
    model.save(tmp_path / "m.safetensors")
    tensors = safetensors.numpy.load_file(tmp_path / "m.safetensors")
    assert {"layer0.values", "layer0.row_idx", "layer0.col_ptr", "layer0.bias", "layer0.momentum",
            "layer0.second", "layer2.bias", "rng_state"} <= set(tensors)
    assert tensors["layer0.row_idx"].dtype == np.uint32 and tensors["rng_state"].dtype == np.uint64
    W = model.to_scipy()[0].tocsc()
    np.testing.assert_array_equal(tensors["layer0.values"], W.data)
    with safetensors.safe_open(tmp_path / "m.safetensors", framework="numpy") as f:
        meta = json.loads(f.metadata()["sparse_mlp"])
    assert meta["sizes"] == [10, 24, 16, 3] and meta["format"] == "sparse_mlp.model"


def test_a_safetensors_checkpoint_resumes_bit_identically(tmp_path):
    X, y = blobs(n=120, f=10, c=3, seed=1)
    kw = dict(epochs=4, batch_size=16, verbose=0, optimizer=sm.Adam(),
              learning_rate=sm.schedules.Cosine(1e-3), checkpoint_every=1)
    whole = sm.SparseMLP([10, 24, 3], epsilon=4, seed=2)
    whole.fit(X, y, **kw)

    def stop(model, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    cut = sm.SparseMLP([10, 24, 3], epsilon=4, seed=2)
    with pytest.raises(KeyboardInterrupt):
        cut.fit(X, y, checkpoint=tmp_path / "ck.safetensors", callbacks=[stop], **kw)
    resumed = sm.SparseMLP([10, 24, 3], epsilon=4, seed=2)
    resumed.fit(X, y, checkpoint=tmp_path / "ck.safetensors", resume=True, **kw)
    assert_same_training_state(whole, resumed)


def _tensors_and_meta(path):
    tensors = dict(safetensors.numpy.load_file(path))
    with safetensors.safe_open(path, framework="numpy") as f:
        return tensors, f.metadata()


@pytest.mark.parametrize("damage, message", [
    (lambda t, m: t.update({"layer0.row_idx": t["layer0.row_idx"] + 1000}), "invalid model"),
    (lambda t, m: t.update({"layer1.values": t["layer1.values"][:-1]}), "invalid model"),
    (lambda t, m: t.update({"layer0.values": t["layer0.values"].astype(np.float64)}), "dtype float64"),
    (lambda t, m: t.pop("layer1.col_ptr"), "layer1.col_ptr"),
    (lambda t, m: m.clear(), "not a sparse_mlp model file"),
    (lambda t, m: m.update(sparse_mlp='{"format": "other"}'), "another program"),
    (lambda t, m: m.update(sparse_mlp="{not json"), "not JSON"),
])
def test_crafted_safetensors_files_get_a_named_error(tmp_path, damage, message):
    model, X, _ = trained()
    model.save(tmp_path / "m.safetensors")
    tensors, meta = _tensors_and_meta(tmp_path / "m.safetensors")
    damage(tensors, meta)
    safetensors.numpy.save_file(tensors, tmp_path / "bad.safetensors", metadata=meta or None)
    with pytest.raises(sm.CheckpointError, match=message):
        sm.SparseMLP.load(tmp_path / "bad.safetensors")


def test_truncated_and_foreign_files_get_a_named_error(tmp_path):
    model, _, _ = trained()
    model.save(tmp_path / "m.safetensors")
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(sm.CheckpointError, match="not a readable safetensors model file"):
        sm.SparseMLP.load(tmp_path / "cut.safetensors")
    (tmp_path / "npz.safetensors").write_bytes((lambda p: (model.save(p), p.read_bytes())[1])(
        tmp_path / "m.npz"))
    with pytest.raises(sm.CheckpointError, match="not a readable safetensors model file"):
        sm.SparseMLP.load(tmp_path / "npz.safetensors")


def test_without_the_package_a_clear_error_and_nothing_written(tmp_path):
    """The package imports and works without safetensors; only the format
    asks for it."""
    code = (
        "import sys; sys.modules['safetensors'] = None\n"
        "import numpy as np, sparse_mlp as sm\n"
        "m = sm.SparseMLP([4, 8, 2], epsilon=2, seed=0)\n"
        "m.save({!r})\n"
        "try:\n"
        "    m.save({!r})\n"
        "except sm.InvalidInputError as e:\n"
        "    print(e)\n".format(str(tmp_path / "m.npz"), str(tmp_path / "m.safetensors")))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pip install safetensors" in r.stdout
    assert not (tmp_path / "m.safetensors").exists() and (tmp_path / "m.npz").exists()


def test_the_command_line_saves_and_reads_safetensors(tmp_path):
    cli = [sys.executable, "-m", "sparse_mlp"]
    r = subprocess.run([*cli, "train", "--epochs", "2", "--hidden", "32", "--save",
                        str(tmp_path / "m.safetensors"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "info", str(tmp_path / "m.safetensors"), "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["epochs_trained"] == 2
