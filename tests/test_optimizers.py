"""Adam and AdamW against dense numpy references, their moments through SET,
checkpoints and threads, and the optimizer's bad inputs."""

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs, dense_layers
from reference import loss_and_grads


def adam_reference(layers, grads, moments, t, lr, b1, b2, eps, wd, decoupled):
    """Adam's update on dense copies, masked to the existing connections."""
    new_layers, new_moments = [], []
    for (W, b), (gW, gb), ((mW, vW), (mb, vb)) in zip(layers, grads, moments):
        mask = W != 0
        out = []
        for p, g, m, v, masked in ((W, gW * mask, mW, vW, mask), (b, gb, mb, vb, True)):
            g = g if decoupled else g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
            p = p - lr * (step + (wd * p if decoupled else 0)) * masked
            out.append((p, m, v))
        (W, mW, vW), (b, mb, vb) = out
        new_layers.append((W, b))
        new_moments.append(((mW, vW), (mb, vb)))
    return new_layers, new_moments


@pytest.mark.parametrize("optimizer", [sm.Adam(beta1=0.8, beta2=0.99, eps=1e-7), sm.AdamW()])
def test_full_batch_adam_steps_equal_numpy(optimizer):
    X, y = blobs(n=64, f=10, c=3, seed=4)
    model = sm.SparseMLP([10, 24, 16, 3], activation=sm.AllReLU(0.5), epsilon=4, dropout=0.0, seed=9)
    layers = dense_layers(model)
    acts = model._net.activations
    lr, wd = 0.01, 1e-3
    zeros = [((np.zeros_like(W), np.zeros_like(W)), (np.zeros_like(b), np.zeros_like(b)))
             for W, b in layers]
    moments = zeros
    for t in range(1, 4):
        _, grads = loss_and_grads(layers, acts, X, y)
        layers, moments = adam_reference(layers, grads, moments, t, lr, optimizer.beta1, optimizer.beta2,
                                         optimizer.eps, wd, isinstance(optimizer, sm.AdamW))
    model.fit(X, y, epochs=3, batch_size=64, learning_rate=lr, weight_decay=wd, optimizer=optimizer,
              topology=None, shuffle=False, verbose=0)
    assert model._net.optimizer_state == (optimizer.name, 3)
    for i, ((W, b), (rW, rb)) in enumerate(zip(dense_layers(model), layers)):
        np.testing.assert_allclose(W, rW * (W != 0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, rb, rtol=1e-4, atol=1e-6)
        st = model._net.layer_state(i)
        (_, rv), (_, rbv) = moments[i]
        np.testing.assert_allclose(st["bias_second"], rbv, rtol=1e-3, atol=1e-12)
        assert st["second"].size == st["values"].size and (st["second"] >= 0).all()


@pytest.mark.parametrize("optimizer, rate", [
    ("sgd", sm.schedules.Cosine(0.05, final=0.001, warmup_epochs=1)),
    (sm.Adam(), sm.schedules.Step(0.003, factor=0.5, every=2)),
    (sm.AdamW(), sm.schedules.ReduceOnPlateau(0.003, monitor="val_loss", patience=1, factor=0.5)),
])
def test_resume_mid_run_is_bit_exact_with_each_optimizer_and_schedule(tmp_path, optimizer, rate):
    X, y = blobs(n=160, f=10, c=3, seed=2)
    val = blobs(n=60, f=10, c=3, seed=3)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=y.size)
    kw = dict(epochs=6, batch_size=16, learning_rate=rate, optimizer=optimizer, validation_data=val,
              verbose=0, sample_weight=w, topology=sm.SET(0.3),
              pruning=sm.ImportancePruning(start_epoch=2, every=2, keep=0.5, events=2))

    def make():
        return sm.SparseMLP([10, 32, 24, 3], epsilon=4, seed=5)

    whole = make()
    history = whole.fit(X, y, **kw)

    def stop_at_3(model, record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        make().fit(X, y, checkpoint=path, callbacks=[stop_at_3], **kw)
    resumed = make()
    again = resumed.fit(X, y, checkpoint=path, resume=True, **kw)
    assert_same_training_state(whole, resumed)
    assert [r["learning_rate"] for r in again] == [r["learning_rate"] for r in history]
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in history]
    if not isinstance(rate, sm.schedules.ReduceOnPlateau):
        expected = [float(rate.rates(e, 10, 6, 160, {})[0]) for e in range(1, 7)]
        assert [r["learning_rate"] for r in history] == pytest.approx(expected, rel=1e-6)


def test_one_and_two_threads_give_the_same_bits_with_adam_schedules_and_weights(threads):
    X, y = blobs(n=200, f=10, c=3, seed=7)

    def run(n):
        sm.set_num_threads(n)
        model = sm.SparseMLP([10, 40, 3], epsilon=5, seed=1)
        model.fit(X, y, epochs=3, batch_size=32, optimizer="adamw",
                  learning_rate=sm.schedules.Cosine(0.01, warmup_epochs=1), class_weight="balanced",
                  verbose=0)
        return model

    assert_same_training_state(run(1), run(2))


def test_adam_reaches_sgds_accuracy_on_a_separable_task():
    X, y = blobs(n=600, f=12, c=4, seed=11)
    X, y, Xt, yt = X[:400], y[:400], X[400:], y[400:]
    scores = {}
    for name in ("sgd", "adam"):
        model = sm.SparseMLP([12, 64, 4], epsilon=6, seed=0)
        history = model.fit(X, y, epochs=30, batch_size=32, optimizer=name, validation_data=(Xt, yt),
                            verbose=0)  # Adam at its default rate, 1e-3
        scores[name] = max(r["val_accuracy"] for r in history)
    assert scores["adam"] >= scores["sgd"] and scores["adam"] > 0.95, scores


def test_changing_the_optimizer_restarts_its_moments():
    X, y = blobs(n=64, f=10, c=3)
    model = sm.SparseMLP([10, 20, 3], epsilon=4, seed=0)
    model.fit(X, y, epochs=1, optimizer="adam", verbose=0)
    assert model._net.optimizer_state == ("adam", 2) and "second" in model._net.layer_state(0)
    model.fit(X, y, epochs=1, verbose=0)
    assert model._net.optimizer_state == ("sgd", 2) and "second" not in model._net.layer_state(0)


def test_memory_estimate_counts_the_second_moments(tmp_path):
    model = sm.SparseMLP([50, 80, 5], epsilon=5, seed=0)
    sgd, adam = model.memory_estimate(32), model.memory_estimate(32, optimizer=sm.Adam())
    assert adam["parameters"] - sgd["parameters"] == 4 * (model.n_connections + 85)
    X, y = blobs(n=64, f=50, c=5)
    model.fit(X, y, epochs=1, optimizer="adam", verbose=0)
    assert sum(model._net.layer_bytes) == adam["parameters"]
    assert model.memory_estimate(32, optimizer="adam")["parameters"] == adam["parameters"]
    # the moments survive a save and load
    model.save(tmp_path / "m.npz")
    loaded = sm.SparseMLP.load(tmp_path / "m.npz")
    assert loaded._net.optimizer_state == model._net.optimizer_state
    np.testing.assert_array_equal(loaded._net.layer_state(0)["second"], model._net.layer_state(0)["second"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="adagrad"), "unknown optimizer 'adagrad'"),
    (dict(optimizer=42), "optimizer must be"),
    (dict(learning_rate="fast"), "learning_rate must be"),
    (dict(learning_rate=-0.1), "learning_rate"),
    (dict(sample_weight=np.ones(5)), "one weight per sample"),
    (dict(sample_weight=np.r_[np.nan, np.ones(63)]), "nan at sample 0"),
    (dict(sample_weight=-np.ones(64)), "not negative"),
    (dict(class_weight={7: 2.0}), "class 7"),
    (dict(class_weight="inverse"), "class_weight must be"),
    (dict(learning_rate=sm.schedules.ReduceOnPlateau(0.01)), "validation"),
])
def test_bad_training_inputs_are_named_errors_and_change_nothing(kwargs, match):
    X, y = blobs(n=64, f=10, c=3)
    model = sm.SparseMLP([10, 20, 3], epsilon=4, seed=0)
    before = model._net.layer_state(0)["values"].copy()
    with pytest.raises(sm.InvalidInputError, match=match):
        model.fit(X, y, epochs=1, verbose=0, **kwargs)
    np.testing.assert_array_equal(model._net.layer_state(0)["values"], before)
    assert model.history == [] and model._net.run_state[2] == 0


@pytest.mark.parametrize("make, match", [
    (lambda: sm.Adam(beta1=1.0), "beta1"),
    (lambda: sm.AdamW(beta2=-0.1), "beta2"),
    (lambda: sm.Adam(eps=0.0), "eps"),
    (lambda: sm.SGD(momentum=1.5), "momentum"),
    (lambda: sm.SGD(nesterov="yes"), "nesterov"),
])
def test_bad_optimizer_settings_are_named(make, match):
    with pytest.raises(sm.InvalidInputError, match=match):
        make()


@pytest.mark.parametrize("strategy", [
    dict(recycling=sm.NeuronRecycling(every_steps=7, fraction=0.1, interpolate_steps=3)),
    dict(pruning=sm.ImportancePruning(start_epoch=1, every=1, percentile=20, shrink=True)),
])
def test_adams_moments_follow_recycling_and_shrinking_and_resume_exactly(tmp_path, strategy):
    X, y = blobs(n=160, f=10, c=3, seed=2)
    kw = dict(epochs=4, batch_size=16, optimizer="adam", verbose=0, **strategy)

    def make():
        return sm.SparseMLP([10, 32, 24, 3], epsilon=4, seed=5)

    whole = make()
    whole.fit(X, y, **kw)
    for i in range(3):
        st = whole._net.layer_state(i)
        assert st["second"].size == st["values"].size and st["bias_second"].size == st["bias"].size
        assert np.isfinite(st["second"]).all() and (st["second"] >= 0).all()

    def stop_at_2(model, record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make().fit(X, y, checkpoint=tmp_path / "run.npz", callbacks=[stop_at_2], **kw)
    resumed = make()
    resumed.fit(X, y, checkpoint=tmp_path / "run.npz", resume=True, **kw)
    assert_same_training_state(whole, resumed)
