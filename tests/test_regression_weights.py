"""Regression (MSE on continuous targets, SparseMLPRegressor) and sample or
class weights, against dense numpy references."""

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs, dense_layers
from reference import forward


def smooth(n=800, seed=0, outputs=1):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 5)).astype(np.float32)
    y = np.stack([np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 - X[:, 2] * X[:, 3],
                  np.cos(X[:, 1]) * X[:, 4]][:outputs], axis=1).astype(np.float32)
    return X, y


def weighted_reference(layers, acts, X, targets, weights, regression):
    """Loss Σ w l / n and its dense gradients (no dropout)."""
    a, derivs, z = forward(layers, acts, X)
    n, c = z.shape
    w = np.ones(n) if weights is None else weights.astype(np.float64)
    if regression:
        err = z - targets
        value = (w * (err ** 2).mean(axis=1)).sum() / n
        delta = 2 * err / c * w[:, None] / n
    else:
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        value = (w * -np.log(p[np.arange(n), targets])).sum() / n
        delta = (p - np.eye(c)[targets]) * w[:, None] / n
    grads = [None] * len(layers)
    for lay in range(len(layers) - 1, -1, -1):
        grads[lay] = (a[lay].T @ delta, delta.sum(axis=0))
        if lay > 0:
            delta = (delta @ layers[lay][0].T) * derivs[lay - 1]
    return value, grads


@pytest.mark.parametrize("regression", [False, True])
def test_weighted_loss_and_gradients_match_dense_numpy(regression):
    rng = np.random.default_rng(3)
    if regression:
        X, y = smooth(40, outputs=2)
        model = sm.SparseMLP([5, 16, 2], epsilon=3, loss="mse", dropout=0.0, seed=1)
    else:
        X, y = blobs(40, 5, 3, seed=2)
        model = sm.SparseMLP([5, 16, 3], epsilon=3, dropout=0.0, seed=1)
    w = rng.uniform(0, 3, size=40).astype(np.float32)
    value, grads = model._net.gradients(X, y, sample_weight=w)
    ref_value, ref = weighted_reference(dense_layers(model), model._net.activations, X, y, w, regression)
    assert value == pytest.approx(ref_value, rel=1e-5)
    for i, (gw, gb) in enumerate(grads):
        dense = np.zeros(model.layers[i].shape)
        st = model._net.layer_state(i)
        cols = np.repeat(np.arange(st["col_ptr"].size - 1), np.diff(st["col_ptr"]))
        dense[st["row_idx"], cols] = gw
        np.testing.assert_allclose(dense, ref[i][0] * (dense != 0), rtol=2e-4, atol=1e-7)
        np.testing.assert_allclose(gb, ref[i][1], rtol=2e-4, atol=1e-7)
    loss = model.evaluate(X, y, sample_weight=w)["loss"]
    assert loss == pytest.approx(ref_value, rel=1e-5)


def test_regression_learns_a_smooth_function_and_reports_mse_mae_r2():
    X, y = smooth(1200)
    model = sm.SparseMLP([5, 128, 64, 1], epsilon=8, loss="mse", dropout=0.0, seed=0)
    assert model.is_regressor
    history = model.fit(X[:1000], y[:1000, 0], epochs=60, batch_size=32, optimizer="adam",
                        learning_rate=3e-3, validation_data=(X[1000:], y[1000:, 0]), verbose=0)
    assert "accuracy" not in history[-1] and {"val_loss", "val_mae", "val_r2"} <= set(history[-1])
    result = model.evaluate(X[1000:], y[1000:, 0])
    pred = model.predict(X[1000:])
    assert pred.shape == (200,)
    err = pred.astype(np.float64) - y[1000:, 0]
    r2 = 1 - (err ** 2).sum() / ((y[1000:, 0] - y[1000:, 0].mean()) ** 2).sum()
    assert result["mse"] == pytest.approx((err ** 2).mean(), rel=1e-5)
    assert result["loss"] == pytest.approx(result["mse"], rel=1e-4)
    assert result["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    assert result["r2"] == pytest.approx(r2, rel=1e-6) and r2 >= 0.9, result
    assert model.score(X[1000:], y[1000:, 0]) == result["r2"]
    assert history[-1]["val_r2"] == pytest.approx(r2, rel=1e-6)


def test_several_outputs_and_a_saved_regressor(tmp_path):
    X, y = smooth(300, outputs=2)
    model = sm.SparseMLP([5, 32, 2], epsilon=4, loss="mse", dropout=0.0, seed=0)
    model.fit(X, y, epochs=3, verbose=0, optimizer="adam")
    assert model.predict(X[:4]).shape == (4, 2) and model.classes_ is None
    model.save(tmp_path / "reg.npz")
    loaded = sm.SparseMLP.load(tmp_path / "reg.npz")
    assert loaded.is_regressor
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with pytest.raises(sm.InvalidInputError, match=r"shape \(300, 3\)"):
        model.fit(X, np.ones((300, 3)), epochs=1, verbose=0)
    with pytest.raises(sm.InvalidInputError, match="nan at row 2, column 1"):
        bad = y.copy()
        bad[1, 0] = np.nan
        model.fit(X, bad, epochs=1, verbose=0)
    with pytest.raises(sm.InvalidInputError, match="class_weight is for classification"):
        model.fit(X, y, epochs=1, verbose=0, class_weight="balanced")


def test_the_regressor_estimator_reaches_r2_0_9():
    pytest.importorskip("sklearn")
    X, y = smooth(1200, seed=1)
    reg = sm.SparseMLPRegressor(hidden_layer_sizes=(128, 64), max_iter=80, random_state=0,
                                learning_rate_init=3e-3, early_stopping=True, n_iter_no_change=15)
    reg.fit(X[:1000], y[:1000, 0])
    assert reg.score(X[1000:], y[1000:, 0]) >= 0.9
    assert reg.best_validation_score_ == max(r["val_r2"] for r in reg.history_)
    assert reg.predict(X[:3]).shape == (3,)
    two = sm.SparseMLPRegressor(hidden_layer_sizes=(16,), max_iter=2, random_state=0)
    assert two.fit(*smooth(100, outputs=2)).predict(X[:3]).shape == (3, 2)


def test_weights_of_one_are_no_weights_and_balanced_is_its_formula():
    X, y = blobs(150, 10, 3, seed=6)
    y[:100] = 0  # imbalanced

    def run(**kw):
        model = sm.SparseMLP([10, 24, 3], epsilon=4, seed=2)
        model.fit(X, y, epochs=2, verbose=0, **kw)
        return model

    assert_same_training_state(run(), run(sample_weight=np.ones(150)))
    counts = np.bincount(y, minlength=3)
    by_hand = (150 / (3 * counts))[y]
    assert_same_training_state(run(class_weight="balanced"), run(sample_weight=by_hand))
    as_dict = {0: 0.5, 2: 3.0}
    assert_same_training_state(run(class_weight=as_dict), run(sample_weight=np.array([0.5, 1.0, 3.0])[y]))
    both = run(class_weight="balanced", sample_weight=np.full(150, 2.0))
    assert_same_training_state(both, run(sample_weight=2 * by_hand))


def test_class_weights_by_the_datas_own_labels():
    X, y = blobs(120, 10, 2, seed=6)
    words = np.array(["cat", "dog"])[y]
    model = sm.SparseMLP([10, 24, 2], epsilon=4, seed=2)
    model.fit(X, words, epochs=1, verbose=0, class_weight={"dog": 2.0})
    with pytest.raises(sm.InvalidInputError, match="class 'cow'.*'cat', 'dog'"):
        model.fit(X, words, epochs=1, verbose=0, class_weight={"cow": 2.0})
    with pytest.raises(sm.InvalidInputError, match="finite"):
        model.fit(X, words, epochs=1, verbose=0, class_weight={"dog": float("inf")})
    with pytest.raises(sm.InvalidInputError, match="all zero"):
        model.fit(X, words, epochs=1, verbose=0, sample_weight=np.zeros(120))
    assert model.epochs_trained == 1


def test_the_classifier_estimator_takes_weights():
    pytest.importorskip("sklearn")
    X, y = blobs(200, 10, 3, seed=5)
    labels = np.array(["a", "b", "c"])[y]
    clf = sm.SparseMLPClassifier(hidden_layer_sizes=(24,), max_iter=3, random_state=1,
                                 class_weight={"c": 2.0}).fit(X, labels, sample_weight=np.ones(200))
    assert clf.n_iter_ == 3
    with pytest.raises(ValueError, match="not in y"):
        sm.SparseMLPClassifier(max_iter=1, class_weight={"z": 1.0}).fit(X, labels)
