"""The Python API: predictions, layer views, persistence, errors for bad input."""

import math
import os

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import blobs


@pytest.fixture
def trained():
    X, y = blobs(n=150, f=10, c=3, seed=1)
    model = sm.SparseMLP([10, 40, 30, 3], activation=sm.AllReLU(0.5), epsilon=5, seed=0)
    model.fit(X, y, epochs=15, batch_size=16, learning_rate=0.02, verbose=0)
    return model, X, y


def test_contract_example_runs_and_reports_history():
    X, y = blobs(n=280, f=50, c=2, seed=3)
    X, Xt, y, yt = X[:200], X[200:], y[:200], y[200:]
    model = sm.SparseMLP([50, 40, 10, 40, 2], activation=sm.AllReLU(alpha=0.5), epsilon=10,
                         init="normal", dropout=0.3, loss="cross_entropy", seed=0)
    history = model.fit(X, y, epochs=12, batch_size=32, learning_rate=0.01, momentum=0.9,
                        weight_decay=2e-4, topology=sm.SET(zeta=0.3),
                        pruning=sm.ImportancePruning(start_epoch=6, every=3, percentile=20, shrink=True),
                        validation_data=(Xt, yt), verbose=0)
    assert len(history) == 12 and model.history == history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "n_connections", "seconds"):
        assert all(key in r for r in history)
    assert history[-1]["val_accuracy"] > 0.8
    assert model.sizes[1] < 40  # pruned


def test_predictions_are_consistent(trained):
    model, X, y = trained
    p = model.predict_proba(X)
    assert p.shape == (150, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X), p.argmax(axis=1))
    assert model.score(X, y) == pytest.approx(np.mean(model.predict(X) == y))
    assert model.score(X, y) > 0.9
    # any batch size gives the same answer; lists and float64 are accepted
    np.testing.assert_array_equal(model.predict_proba(X, batch_size=7), p)
    np.testing.assert_allclose(model.predict_proba(X.astype(np.float64).tolist()), p)
    # non-contiguous input
    Xf = np.asfortranarray(X)
    np.testing.assert_array_equal(model.predict_proba(Xf), p)


def test_layer_views_and_scipy_export(trained):
    model, X, _ = trained
    assert [layer.shape for layer in model.layers] == [(10, 40), (40, 30), (30, 3)]
    assert sum(layer.nnz for layer in model.layers) == model.n_connections
    a = X.astype(np.float64)
    for i, layer in enumerate(model.layers):
        W = layer.to_scipy()
        assert W.shape == layer.shape and W.nnz == layer.nnz and W.dtype == np.float32
        z = a @ W.toarray() + layer.bias
        if i < 2:
            slope = -0.5 if i == 0 else 0.5
            a = np.where(z >= 0, z, slope * z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(X), e / e.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    assert "nnz" in model.summary() and "SparseMLP" in repr(model)


def test_save_load_round_trip_and_resume_is_exact(tmp_path, trained):
    model, X, y = trained
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = sm.SparseMLP.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.history == model.history and loaded.epochs_trained == 15
    # continuing both gives identical models (momentum, rng and step restored)
    for m in (model, loaded):
        m.fit(X, y, epochs=3, batch_size=16, learning_rate=0.02, verbose=0)
    for a, b in zip(model.layers, loaded.layers):
        np.testing.assert_array_equal(a._state()["values"], b._state()["values"])
        np.testing.assert_array_equal(a._state()["row_idx"], b._state()["row_idx"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_loading_bad_files_raises_checkpoint_error(tmp_path, trained):
    model, _, _ = trained
    with pytest.raises(sm.CheckpointError, match="no model file"):
        sm.SparseMLP.load(tmp_path / "missing.npz")
    good = tmp_path / "good.npz"
    model.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    for path in (truncated, garbage):
        with pytest.raises(sm.CheckpointError):
            sm.SparseMLP.load(path)
    # a structurally wrong model: out-of-range row index
    with np.load(good) as z:
        arrays = dict(z)
    arrays["layer0.row_idx"] = arrays["layer0.row_idx"].copy()
    arrays["layer0.row_idx"][0] = 10_000
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(sm.CheckpointError, match="out of range"):
        sm.SparseMLP.load(bad)


def _valid():
    X, y = blobs(n=40, f=6, c=3)
    return X, y


BAD_CONSTRUCTORS = [
    dict(sizes=[]),
    dict(sizes=[5]),
    dict(sizes="784,10"),
    dict(sizes=[5, 0, 2]),
    dict(sizes=[5, -3, 2]),
    dict(sizes=[5, 2.5, 2]),
    dict(sizes=[5, 1]),  # cross-entropy with one class
    dict(sizes=[5, 8, 2], epsilon=0),
    dict(sizes=[5, 8, 2], epsilon=-1),
    dict(sizes=[5, 8, 2], epsilon=math.nan),
    dict(sizes=[5, 8, 2], density=1.5),
    dict(sizes=[5, 8, 2], dropout=1.0),
    dict(sizes=[5, 8, 2], dropout=-0.1),
    dict(sizes=[5, 8, 2], init="zeros"),
    dict(sizes=[5, 8, 2], loss="hinge"),
    dict(sizes=[5, 8, 2], output_activation="sigmoid"),
    dict(sizes=[5, 8, 2], seed=-1),
    dict(sizes=[5, 8, 2], activation="swish"),
    dict(sizes=[5, 8, 8, 2], activation=["relu"]),
    dict(sizes=[5, 8, 2], activation=[1]),
]


@pytest.mark.parametrize("kwargs", BAD_CONSTRUCTORS)
def test_bad_constructor_arguments_raise(kwargs):
    with pytest.raises(sm.InvalidInputError):
        sm.SparseMLP(**kwargs)


def test_bad_activation_parameters_raise():
    for make in (lambda: sm.AllReLU(-0.5), lambda: sm.AllReLU(math.inf), lambda: sm.AllReLU([]),
                 lambda: sm.LeakyReLU("x"), lambda: sm.SET(zeta=1.5), lambda: sm.SET(zeta=-0.1),
                 lambda: sm.SET(every=0), lambda: sm.ImportancePruning(percentile=101),
                 lambda: sm.ImportancePruning(start_epoch=0)):
        with pytest.raises(sm.InvalidInputError):
            make()


def bad_fits():
    X, y = _valid()
    Xnan = X.copy()
    Xnan[3, 2] = np.nan
    Xinf = X.copy()
    Xinf[0, 0] = np.inf
    return [
        ("features", dict(X=X[:, :5], y=y)),
        ("NaN", dict(X=Xnan, y=y)),
        ("infinite", dict(X=Xinf, y=y)),
        ("too large", dict(X=X.astype(np.float64) * 1e300, y=y)),
        ("2-D", dict(X=X[0], y=y[:1])),
        ("no samples", dict(X=X[:0], y=y[:0])),
        ("labels", dict(X=X, y=y[:-1])),
        ("4 distinct labels", dict(X=X, y=np.where(y == 0, -1, y) + (np.arange(y.size) == 0) * 9)),
        ("2 distinct labels", dict(X=X, y=np.where(y == 0, "a", "b"))),
        ("NaN", dict(X=X, y=np.where(y == 0, np.nan, y))),
        ("one-hot", dict(X=X, y=np.eye(3)[y])),
        ("epochs", dict(X=X, y=y, epochs=0)),
        ("batch_size", dict(X=X, y=y, batch_size=0)),
        ("learning_rate", dict(X=X, y=y, learning_rate=0)),
        ("learning_rate", dict(X=X, y=y, learning_rate=math.nan)),
        ("momentum", dict(X=X, y=y, momentum=1.0)),
        ("weight_decay", dict(X=X, y=y, weight_decay=-1e-4)),
        ("topology", dict(X=X, y=y, topology="SET")),
        ("pruning", dict(X=X, y=y, pruning=0.2)),
        ("validation_data", dict(X=X, y=y, validation_data=(X,))),
        ("X_val", dict(X=X, y=y, validation_data=(X[:, :4], y))),
    ]


@pytest.mark.parametrize("message, kwargs", bad_fits(), ids=[m for m, _ in bad_fits()])
def test_bad_fit_input_raises_before_any_work(message, kwargs, capfd):
    model = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)
    before = model._net.layer_state(0)["values"].copy()
    with pytest.raises(sm.InvalidInputError, match=message):
        model.fit(verbose=0, **kwargs)
    np.testing.assert_array_equal(model._net.layer_state(0)["values"], before)
    assert model.history == [] and model._net.run_state[2] == 0
    assert "panicked" not in capfd.readouterr().err


def test_non_numeric_input_is_a_type_error():
    model = sm.SparseMLP([2, 4, 2], epsilon=1, seed=0)
    with pytest.raises(TypeError):
        model.fit(np.array([["a", "b"]]), [0], verbose=0)
    with pytest.raises(TypeError):
        model.fit(np.ones((2, 2)), np.array([1 + 1j, 2j]), verbose=0)


def test_compiled_module_rejects_misuse_without_panicking(capfd):
    net = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)._net
    X, y = _valid()
    with pytest.raises(TypeError):
        net.evaluate(X.astype(np.float64), y)  # wrong dtype
    with pytest.raises(TypeError):
        net.evaluate(np.asfortranarray(X), y)  # not C-contiguous
    with pytest.raises(ValueError):
        net.evaluate(X, y + 5)
    with pytest.raises(ValueError):
        net.evaluate(X, y, 0)
    with pytest.raises(ValueError):
        net.remove_neurons(0, np.arange(12, dtype=np.int64))  # all neurons
    with pytest.raises(ValueError):
        net.remove_neurons(5, np.array([0], dtype=np.int64))
    with pytest.raises(ValueError):
        net.evolve_set(2.0)
    with pytest.raises(ValueError):
        net.set_layer_values(0, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError):
        net.layer_state(9)
    with pytest.raises(ValueError):
        net.train_epoch(X, y, 0, 0.1, 0.9, 0.0)
    with pytest.raises(ValueError):
        net.train_epoch(X, y, 8, -0.1, 0.9, 0.0)
    assert "panicked" not in capfd.readouterr().err


def test_divergence_names_the_epoch_and_batch():
    X, y = _valid()
    model = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)
    with pytest.raises(sm.DivergenceError, match="epoch 1, batch") as info:
        model.fit(X * 1e30, y, epochs=3, batch_size=8, learning_rate=1e6, verbose=0)
    assert info.value.epoch == 1 and info.value.batch is not None


def test_warm_restart_and_callbacks_stop_early():
    X, y = _valid()
    model = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)
    seen = []
    model.fit(X, y, epochs=10, verbose=0, callbacks=[lambda m, r: seen.append(r["epoch"]) or len(seen) == 3])
    assert seen == [1, 2, 3] and model.epochs_trained == 3
    model.fit(X, y, epochs=2, verbose=0)
    assert [r["epoch"] for r in model.history] == [1, 2, 3, 4, 5]


def test_progress_lines(capsys):
    X, y = _valid()
    model = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)
    model.fit(X, y, epochs=4, verbose=2, validation_data=(X, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("epoch 4/4") and "val_acc" in lines[-1]
    model.fit(X, y, epochs=4, verbose=0)
    assert capsys.readouterr().out == ""


def test_history_with_numpy_values_from_a_callback_is_saved(tmp_path):
    X, y = _valid()
    model = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)

    def note(m, record):
        record["norm"] = np.float32(1.5)
        record["per_layer"] = np.arange(2)

    model.fit(X, y, epochs=2, verbose=0, callbacks=[note])
    model.save(tmp_path / "m.npz")
    loaded = sm.SparseMLP.load(tmp_path / "m.npz")
    assert loaded.history[-1]["norm"] == 1.5 and loaded.history[-1]["per_layer"] == [0, 1]


def test_data_helpers_reject_bad_arguments():
    from sparse_mlp.datasets import make_classification

    for kwargs in (dict(n_samples=0), dict(n_informative=30, n_features=20),
                   dict(n_classes=40, n_informative=2), dict(flip_y=2.0), dict(class_sep=-1)):
        with pytest.raises(sm.InvalidInputError):
            make_classification(**kwargs)
    for kwargs in (dict(density=0.1, distribution="cubic"), dict(density=0.0), dict(epsilon=-2)):
        with pytest.raises(sm.InvalidInputError):
            sm.connection_counts([10, 5, 2], **kwargs)


def test_progress_bar_on_a_terminal(capsys, monkeypatch):
    import sparse_mlp.training.progress as progress_module

    monkeypatch.setattr(progress_module, "_is_terminal", lambda stream: True)
    X, y = _valid()
    model = sm.SparseMLP([6, 12, 3], epsilon=3, seed=0)
    model.fit(X, y, epochs=3, verbose=1, validation_data=(X, y))
    out = capsys.readouterr().out
    n_batches = -(-len(y) // 32)
    # one bar over all mini-batches, at its end; no per-epoch lines
    assert f"{3 * n_batches}/{3 * n_batches}" in out and "epoch 3/3" in out
    assert "nnz=" in out and "val_acc=" in out and "loss " not in out

    # During an epoch the core reports the batches done since the stretch began.
    progress = progress_module.Progress(1, 4, done=1, n_batches=10)
    assert progress.bar.n == 10
    progress.batches(2)(3)
    assert progress.bar.n == 13
    progress.batches(3, offset=4)(5)  # a stretch after a recycling event
    assert progress.bar.n == 29
    progress.report(3, {"loss": 0.5, "accuracy": 0.8, "n_connections": 7})
    assert progress.bar.n == 30 and progress.bar.desc.startswith("epoch 4/4")
    progress.close()
    assert progress_module.Progress(2, 4, n_batches=10).batches(1) is None


def test_one_dimensional_x_gets_a_hint_that_fits_its_size():
    model = sm.SparseMLP([5, 8, 2], epsilon=2, seed=0)
    with pytest.raises(sm.InvalidInputError, match=r"one sample of 5 features\? use X.reshape\(1, -1\)"):
        model.predict(np.zeros(5))
    with pytest.raises(sm.InvalidInputError, match=r"takes an array of shape \(n_samples, 5\)") as e:
        model.predict(np.zeros(1000))
    assert "reshape(1, -1)" not in str(e.value)
    single = sm.SparseMLP([1, 8, 2], epsilon=2, seed=0)
    with pytest.raises(sm.InvalidInputError, match=r"samples of one feature\? use X.reshape\(-1, 1\)"):
        single.predict(np.zeros(1000))


def test_input_connectivity_is_an_image_only_for_images():
    from sparse_mlp import plots

    table = sm.SparseMLP([500, 40, 2], epsilon=10, seed=0)
    counts = plots.input_connectivity(table)
    assert counts.shape == (500,) and counts.sum() == table.layers[0].nnz
    assert plots.input_connectivity(table, (20, 25)).shape == (20, 25)
    image = sm.SparseMLP([784, 40, 2], epsilon=10, seed=0)
    assert plots.input_connectivity(image).shape == (28, 28)
