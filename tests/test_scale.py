"""What large models rest on: inference whose memory does not grow with
depth, the memory estimate and fit's refusal, training from memory-mapped data."""

import gc
import weakref

import numpy as np
import pytest

import sparse_mlp as sm
import sparse_mlp.model as model_module
from conftest import blobs, dense_layers, room_for


def _dense_forward(model, X):
    a = X.astype(np.float64)
    layers = dense_layers(model)
    for i, (W, b) in enumerate(layers):
        z = a @ W + b
        a = np.where(z >= 0, z, 0.5 * z) if i + 1 < len(layers) else z
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("hidden", [[], [24], [24, 40], [24, 40, 16]])
def test_inference_matches_the_dense_reference_at_any_depth_and_chunk(hidden):
    X, y = blobs(90, 10, 3)
    model = sm.SparseMLP([10, *hidden, 3], epsilon=3, activation=sm.LeakyReLU(0.5), seed=4)
    model.fit(X, y, epochs=2, verbose=0)
    expected = _dense_forward(model, X)
    for batch in (None, 1, 7, 90, 1000):
        np.testing.assert_allclose(model.predict_proba(X, batch_size=batch), expected,
                                   rtol=1e-4, atol=1e-6)
    loss = -np.mean(np.log(expected[np.arange(90), y]))
    assert model.evaluate(X, y, batch_size=7)["loss"] == pytest.approx(loss, rel=1e-4)


def test_the_default_inference_chunk_keeps_buffers_within_256_mb():
    X, y = blobs(40, 20, 3)
    model = sm.SparseMLP([20, 70_000, 3], epsilon=1, seed=0)
    per_sample = 4 * (20 + 2 * 70_000 + 3)  # the input, two hidden blocks, the outputs
    assert model._net.inference_bytes(1) == per_sample
    assert model._net.inference_batch() == (256 << 20) // per_sample < 1024
    assert model.memory_estimate(16)["inference_buffers"] == 479 * per_sample
    small = sm.SparseMLP([20, 500, 3], epsilon=3, seed=0)
    X2, y2 = blobs(1100, 20, 3)
    small.fit(X2, y2, epochs=1, batch_size=1100, verbose=0)  # its buffers hold more: reused
    assert small._net.inference_batch() == 1100
    np.testing.assert_allclose(small.predict_proba(X2), small.predict_proba(X2, batch_size=7),
                               rtol=1e-6)
    assert sm.SparseMLP([20, 64, 3], seed=0)._net.inference_batch() == 1024
    np.testing.assert_allclose(model.predict_proba(X), model.predict_proba(X, batch_size=1),
                               rtol=1e-6)


def test_the_memory_estimate_is_what_training_allocates():
    X, y = blobs(100, 10, 3)
    model = sm.SparseMLP([10, 50, 30, 3], epsilon=4, seed=0)
    est = model.memory_estimate(batch_size=16)
    assert est["parameters"] == model.memory_bytes  # nothing else allocated yet
    assert est["training_total"] == est["parameters"] + est["training_buffers"] + est["topology_change"]
    assert est["inference_total"] == est["parameters"] + est["inference_buffers"]
    assert all(est[k] <= est["training_total"] for k in ("parameters", "training_buffers", "topology_change"))
    # 24 bytes per connection, and per neuron its pointers and bias state
    assert est["parameters"] >= 24 * model.n_connections
    model.fit(X, y, epochs=1, batch_size=16, validation_data=(X, y), verbose=0)
    assert model.memory_bytes == est["parameters"] + est["training_buffers"]
    with pytest.raises(sm.InvalidInputError, match="batch_size"):
        model.memory_estimate(0)


def test_fit_refuses_before_allocating_when_memory_is_short(monkeypatch):
    X, y = blobs(100, 10, 3)
    model = sm.SparseMLP([10, 500, 400, 3], epsilon=20, seed=0)
    before = model.memory_bytes
    room = room_for(model, 40)  # everything but a 64-sample batch: 40 samples fit
    monkeypatch.setattr(model_module, "available_bytes", lambda: room)
    with pytest.raises(sm.InsufficientMemoryError, match=r"batch_size=40 would fit") as err:
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    assert "batch_size=64 needs" in str(err.value) and isinstance(err.value, MemoryError)
    assert model.memory_bytes == before and model.epochs_trained == 0
    model.fit(X, y, epochs=1, batch_size=40, verbose=0)  # the advice is right
    assert model.epochs_trained == 1
    monkeypatch.setattr(model_module, "available_bytes", lambda: 1000)
    with pytest.raises(sm.InsufficientMemoryError, match="the model itself does not fit"):
        sm.SparseMLP([10, 500, 400, 3], epsilon=20, seed=0).fit(X, y, epochs=1, verbose=0)


def test_a_batch_larger_than_the_data_is_the_data(monkeypatch):
    X, y = blobs(50, 10, 3)
    model = sm.SparseMLP([10, 500, 400, 3], epsilon=20, seed=0)
    est = model.memory_estimate(batch_size=50)
    monkeypatch.setattr(model_module, "available_bytes", lambda: est["training_total"])
    model.fit(X, y, epochs=1, batch_size=10**12, verbose=0)  # trains with one batch of 50
    assert model.memory_bytes - est["parameters"] == model._net.training_bytes(50)
    assert model.predict_proba(X, batch_size=2**70).shape == (50, 3)
    assert model.memory_estimate(2**70)["training_buffers"] == model._net.training_bytes(2**32 - 1)


def test_the_memory_limit_variable_caps_what_counts_as_available(monkeypatch, tmp_path):
    from sparse_mlp.memory import available_bytes
    X, y = blobs(100, 10, 3)
    model = sm.SparseMLP([10, 500, 400, 3], epsilon=20, seed=0)
    monkeypatch.setenv("SPARSE_MLP_MEMORY_LIMIT", "2.5G")
    assert available_bytes() <= 2_500_000_000
    monkeypatch.setenv("SPARSE_MLP_MEMORY_LIMIT", "200k")
    assert available_bytes() <= 200_000
    with pytest.raises(sm.InsufficientMemoryError, match="available"):
        model.fit(X, y, epochs=1, verbose=0)
    # building or loading a model the limit cannot hold is refused before allocating
    with pytest.raises(sm.InsufficientMemoryError, match=r"building the model .* needs 1\.1 MB"):
        sm.SparseMLP([10, 500, 400, 3], epsilon=20, seed=0)
    monkeypatch.delenv("SPARSE_MLP_MEMORY_LIMIT")
    model.save(tmp_path / "m.npz")
    monkeypatch.setenv("SPARSE_MLP_MEMORY_LIMIT", "200k")
    with pytest.raises(sm.InsufficientMemoryError, match="loading"):
        sm.SparseMLP.load(tmp_path / "m.npz")
    with pytest.raises(sm.InsufficientMemoryError, match="building the network"):
        sm._core.Network([10, 5000, 3], [50000, 15000], [("relu", 0.0)], "cross_entropy",
                         "softmax", 0.0, "he_uniform", 0)
    for bad in ("lots", "-5G", "1e9", "12 GiB"):
        monkeypatch.setenv("SPARSE_MLP_MEMORY_LIMIT", bad)
        with pytest.raises(sm.InvalidInputError, match="SPARSE_MLP_MEMORY_LIMIT"):
            model.fit(X, y, epochs=1, verbose=0)
    assert model.epochs_trained == 0


def test_training_from_a_memory_mapped_file_reads_it_in_place(tmp_path):
    X, y = blobs(300, 12, 3, seed=5)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    checked = model_module.as_features(mapped, 12)
    assert np.shares_memory(checked, mapped), "a float32 memmap is used without a copy"
    a, b = (sm.SparseMLP([12, 40, 3], epsilon=4, seed=1) for _ in range(2))
    a.fit(X, y, epochs=3, verbose=0)
    b.fit(mapped, y, epochs=3, verbose=0)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.to_scipy().toarray(), lb.to_scipy().toarray())
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(mapped))
    bad = np.lib.format.open_memmap(tmp_path / "bad.npy", mode="w+", dtype=np.float32,
                                    shape=(300, 12))
    bad[:] = X
    bad[299, 11] = np.inf
    with pytest.raises(sm.InvalidInputError, match=r"row 300, column 12 \(X\[299, 11\]\)"):
        b.fit(bad, y, epochs=1, verbose=0)


class _CountingNet:
    """Stands in for a model's core network and checks, each time a layer's
    state is fetched, that no array of an earlier layer is still alive."""

    def __init__(self, net):
        self.net, self.alive, self.fetched = net, [], 0

    def __getattr__(self, name):
        return getattr(self.net, name)

    def layer_state(self, i):
        gc.collect()
        still = [r for r in self.alive if r() is not None]
        assert not still, f"{len(still)} arrays of earlier layers alive when layer {i} is fetched"
        st = self.net.layer_state(i)
        self.alive = [weakref.ref(a) for a in st.values() if isinstance(a, np.ndarray)]
        self.fetched += 1
        return st


def test_saving_holds_one_layer_at_a_time_and_stores_uint32_rows(tmp_path):
    X, y = blobs(60, 12, 3)
    model = sm.SparseMLP([12, 30, 30, 30, 3], epsilon=4, seed=1)
    model.fit(X, y, epochs=1, verbose=0)
    expected = model.predict_proba(X)
    counting = _CountingNet(model._net)
    model._net = counting
    model.save(tmp_path / "m.npz")
    assert counting.fetched == 4
    model._net = counting.net
    with np.load(tmp_path / "m.npz") as z:
        assert all(z[f"layer{i}.row_idx"].dtype == np.uint32 for i in range(4))
        assert z["layer1.row_idx"].size == model.layers[1].nnz
    np.testing.assert_array_equal(sm.SparseMLP.load(tmp_path / "m.npz").predict_proba(X), expected)


def test_files_with_int64_row_indices_still_load_and_bad_indices_are_refused(tmp_path):
    X, y = blobs(60, 12, 3)
    model = sm.SparseMLP([12, 30, 3], epsilon=4, seed=1)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        arrays = dict(z)
    old = dict(arrays, **{f"layer{i}.row_idx": arrays[f"layer{i}.row_idx"].astype(np.int64)
                          for i in range(2)})
    np.savez(tmp_path / "old.npz", **old)
    np.testing.assert_array_equal(sm.SparseMLP.load(tmp_path / "old.npz").predict_proba(X),
                                  model.predict_proba(X))
    for key, value, dtype in [("layer0.row_idx", -1, np.int64), ("layer0.row_idx", 2**32, np.int64),
                              ("layer0.col_ptr", -5, np.int64), ("layer0.row_idx", 12, np.uint32)]:
        bad = dict(arrays)
        bad[key] = arrays[key].astype(dtype)
        bad[key][0] = value
        np.savez(tmp_path / "bad.npz", **bad)
        with pytest.raises(sm.CheckpointError, match="out of range|invalid"):
            sm.SparseMLP.load(tmp_path / "bad.npz")
    bad = dict(arrays, **{"layer0.row_idx": arrays["layer0.row_idx"].astype(np.int32)})
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(sm.CheckpointError, match="dtype int32"):
        sm.SparseMLP.load(tmp_path / "bad.npz")
