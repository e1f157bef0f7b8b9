"""precision="bfloat16": activations, derivative factors and errors stored as
bfloat16, weights and sums float32. It must train like float32, keep every
guarantee float32 has (thread-count independence, bit-identical resume, files
that say what they hold), and cost half the activation memory."""

import os
import subprocess
import sys

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs, room_for

OPTIONS = dict(epochs=4, batch_size=16, learning_rate=0.02, verbose=0, topology=sm.SET(0.2))


def _build(precision="bfloat16", seed=3):
    return sm.SparseMLP([10, 48, 32, 3], activation=sm.AllReLU(0.6), epsilon=5, dropout=0.2,
                        seed=seed, precision=precision)


def test_bfloat16_trains_like_float32_and_predicts_close_to_it():
    X, y = blobs(400, 10, 3, seed=2)
    b16, f32 = _build(), _build("float32")
    h16, h32 = b16.fit(X, y, **OPTIONS), f32.fit(X, y, **OPTIONS)
    assert b16.precision == "bfloat16" and f32.precision == "float32"
    assert h16[-1]["accuracy"] > 0.9 and abs(h16[-1]["accuracy"] - h32[-1]["accuracy"]) < 0.05
    p16 = b16.predict_proba(X)
    assert not np.array_equal(p16, f32.predict_proba(X)), "bfloat16 must round something"
    np.testing.assert_allclose(p16.sum(axis=1), 1, rtol=1e-5)
    # the same bfloat16 model predicting in float32 differs only by its rounding
    b16.precision = "float32"
    np.testing.assert_allclose(b16.predict_proba(X), p16, atol=0.02)


def test_bfloat16_results_do_not_depend_on_the_thread_count(threads):
    X, y = blobs(300, 10, 3, seed=4)
    runs = []
    for n in (1, 2, 3):
        sm.set_num_threads(n)
        model = _build()
        model.fit(X, y, **OPTIONS)
        runs.append(model)
    for other in runs[1:]:
        assert_same_training_state(runs[0], other)
        np.testing.assert_array_equal(runs[0].predict_proba(X), other.predict_proba(X))


def test_bfloat16_halves_the_activation_buffers_and_the_estimate_is_what_training_allocates():
    X, y = blobs(200, 10, 3)
    b16, f32 = _build(), _build("float32")
    e16, e32 = b16.memory_estimate(batch_size=16), f32.memory_estimate(batch_size=16)
    assert e16["parameters"] == e32["parameters"]
    # 2 bytes instead of 4 for the 10+48+32 layer inputs, 48+32 factors and two blocks of 48
    # errors; the 3 outputs, their errors before rounding and the labels stay 4 bytes
    narrow = 10 + 48 + 32 + 48 + 32 + 2 * 48
    assert e32["training_buffers"] == 16 * (4 * narrow + 4 * (3 + 1))
    assert e16["training_buffers"] == 16 * (2 * narrow + 4 * (2 * 3 + 1))
    before = b16.memory_bytes
    b16.fit(X, y, **OPTIONS)
    assert b16.memory_bytes - before == e16["training_buffers"]


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_files_record_the_precision_and_resume_bit_identically(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    X, y = blobs(200, 10, 3, seed=5)
    whole = _build()
    whole.fit(X, y, **dict(OPTIONS, epochs=6))
    path = tmp_path / f"run{suffix}"
    class Stop(Exception):
        pass

    def stop_after_three(model, record):
        if record["epoch"] == 3:
            raise Stop  # as a killed process: the checkpoint of epoch 3 is on disk

    with pytest.raises(Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[stop_after_three], **dict(OPTIONS, epochs=6))
    assert sm.SparseMLP.load(path).precision == "bfloat16"
    resumed = _build()
    resumed.fit(X, y, checkpoint=path, resume=True, **dict(OPTIONS, epochs=6))
    assert resumed.precision == "bfloat16"
    assert_same_training_state(whole, resumed)
    saved = tmp_path / f"model{suffix}"
    whole.save(saved)
    loaded = sm.SparseMLP.load(saved)
    assert loaded.precision == "bfloat16"
    np.testing.assert_array_equal(loaded.predict_proba(X), whole.predict_proba(X))


def test_a_bad_precision_is_named():
    with pytest.raises(sm.InvalidInputError, match="precision must be one of"):
        sm.SparseMLP([4, 8, 2], precision="float16")
    model = _build()
    with pytest.raises(sm.InvalidInputError, match="precision must be one of"):
        model.precision = "half"
    assert model.precision == "bfloat16"


def test_the_estimators_take_the_precision():
    X, y = blobs(200, 10, 3)
    clf = sm.SparseMLPClassifier(hidden_layer_sizes=(32,), max_iter=3, precision="bfloat16",
                                 random_state=0)
    assert clf.get_params()["precision"] == "bfloat16"
    clf.fit(X, y)
    assert clf.model_.precision == "bfloat16" and clf.score(X, y) > 0.5


def test_the_command_line_trains_in_bfloat16(tmp_path):
    model = tmp_path / "m.npz"
    run = subprocess.run([sys.executable, "-m", "sparse_mlp", "train", "--hidden", "32,32",
                          "--epochs", "2", "--precision", "bfloat16", "--save", str(model)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    info = subprocess.run([sys.executable, "-m", "sparse_mlp", "info", str(model)],
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0 and "bfloat16 activations" in info.stdout


def test_the_bench_command_measures_either_precision():
    import json

    out = subprocess.run([sys.executable, "-m", "sparse_mlp", "bench", "--sizes", "64,128,10",
                          "--samples", "300", "--epochs", "1", "--precision", "bfloat16", "--profile",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["precision"] == "bfloat16" and result["profile"]


BF16_SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
import sparse_mlp as sm, test_precision
from conftest import blobs, training_state
assert sm._core.simd_level() == {level!r}, sm._core.simd_level()
sm.set_num_threads(2)
X, y = blobs(300, 10, 3, seed=4)
model = test_precision._build()
model.fit(X, y, **test_precision.OPTIONS)
layers, _ = training_state(model)
np.savez({out!r}, proba=model.predict_proba(X), **{{f"{{i}}.{{k}}": a for i, st in enumerate(layers)
                                                   for k, a in st.items()}})
"""


def test_bfloat16_instructions_and_the_portable_kernels_give_the_same_bits(tmp_path):
    """vdpbf16ps (where the CPU has it), AVX-512 and AVX2 without it compute the
    same bfloat16 training to the bit."""
    from sparse_mlp import _core

    levels = {"avx512-bf16": ["avx512-bf16", "avx512", "avx2"], "avx512": ["avx512", "avx2"]}
    if _core.simd_level() not in levels:
        pytest.skip(f"needs AVX-512 to compare paths; this CPU runs {_core.simd_level()}")
    runs = {}
    for level in levels[_core.simd_level()]:
        out = tmp_path / f"{level}.npz"
        script = BF16_SCRIPT.format(tests=os.path.dirname(__file__), level=level, out=str(out))
        env = dict(os.environ)
        env.pop("SPARSE_MLP_SIMD", None)
        if level != _core.simd_level():
            env["SPARSE_MLP_SIMD"] = level
        subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
        with np.load(out) as z:
            runs[level] = {k: z[k] for k in z.files}
    first, *others = runs.values()
    for level, other in zip(list(runs)[1:], others):
        assert first.keys() == other.keys()
        for k in first:
            np.testing.assert_array_equal(first[k], other[k], err_msg=f"{k} on {level}")


def test_the_network_codec_carries_the_precision():
    """Model files, checkpoints and WASAP's messages all go through one codec:
    a worker rebuilt from the server's message trains in the server's precision."""
    from sparse_mlp import _netstate

    net = _build()._net
    meta = _netstate.describe(net)
    assert meta["precision"] == "bfloat16"
    layers = [_netstate.layer(net, i) for i in range(len(meta["sizes"]) - 1)]
    assert _netstate.build(meta, layers).precision == "bfloat16"
    del meta["precision"]  # a file written before precisions existed
    assert _netstate.build(meta, layers).precision == "float32"
    with pytest.raises(sm.InvalidInputError, match="unknown precision"):
        _netstate.build(dict(meta, precision="float8"), layers)


def test_the_memory_refusal_suggests_bfloat16_and_bfloat16_fits_the_larger_batch(monkeypatch):
    from sparse_mlp import model as model_module

    X, y = blobs(100, 10, 3)
    model = sm.SparseMLP([10, 500, 400, 3], epsilon=20, seed=0)
    room = room_for(model, 40)  # everything but a 64-sample float32 batch: 40 samples fit
    monkeypatch.setattr(model_module, "available_bytes", lambda: room)
    with pytest.raises(sm.InsufficientMemoryError, match="batch_size=40 would fit, or about twice "
                                                         "that with precision='bfloat16'"):
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    model.precision = "bfloat16"
    assert model.memory_estimate(64)["training_buffers"] < 40 * 4 * (10 + 500 + 400 + 500 + 400 + 2 * 500)
    model.fit(X, y, epochs=1, batch_size=64, verbose=0)  # the advice is right
    assert model.epochs_trained == 1
