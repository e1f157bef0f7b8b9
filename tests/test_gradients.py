"""Gradients and SGD steps against a dense numpy reference and finite differences."""

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import blobs, dense_layers
from reference import loss_and_grads, sgd


def to_csc_order(layer, dense_grad):
    """Gradient entries at the layer's stored connections, in storage (CSC) order."""
    st = layer._state()
    cols = np.repeat(np.arange(layer.shape[1]), np.diff(st["col_ptr"]))
    return dense_grad[st["row_idx"], cols]


@pytest.mark.parametrize(
    "activation, loss, output",
    [
        (sm.AllReLU(0.6), "cross_entropy", None),
        ("tanh", "cross_entropy", None),
        ([sm.LeakyReLU(0.1), "sigmoid"], "cross_entropy", None),
        ("tanh", "mse", "sigmoid"),
        (sm.AllReLU(0.3), "mse", "identity"),
    ],
)
def test_gradients_match_dense_numpy(activation, loss, output):
    X, y = blobs(n=50, f=12, c=4, seed=1)
    model = sm.SparseMLP([12, 30, 20, 4], activation=activation, epsilon=3, dropout=0.0,
                         loss=loss, output_activation=output, seed=3)
    value, grads = model._net.gradients(X, y)
    ref_value, ref_grads = loss_and_grads(dense_layers(model), model._net.activations, X, y,
                                          loss, model._net.loss[1])
    assert value == pytest.approx(ref_value, rel=1e-5)
    for layer, (gw, gb), (rw, rb) in zip(model.layers, grads, ref_grads):
        np.testing.assert_allclose(gw, to_csc_order(layer, rw), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(gb, rb, rtol=1e-4, atol=1e-6)


def test_gradients_match_finite_differences():
    X, y = blobs(n=40, f=8, c=3, seed=2)
    model = sm.SparseMLP([8, 16, 12, 3], activation="tanh", epsilon=4, dropout=0.0, seed=5)
    _, grads = model._net.gradients(X, y)
    rng = np.random.default_rng(0)
    h = 1e-2
    checked = 0
    for lay, layer in enumerate(model.layers):
        st = layer._state()
        values = st["values"].copy()
        for k in rng.choice(values.size, size=min(8, values.size), replace=False):
            losses = []
            for sign in (1, -1):
                v = values.copy()
                v[k] += sign * h
                model._net.set_layer_values(lay, v)
                losses.append(model._net.evaluate(X, y, 1024)[0])
            model._net.set_layer_values(lay, values)
            fd = (losses[0] - losses[1]) / (2 * h)
            assert grads[lay][0][k] == pytest.approx(fd, rel=0.05, abs=2e-4), (lay, k)
            checked += 1
    assert checked >= 24


@pytest.mark.parametrize("nesterov, bias_decay", [(False, True), (True, True), (False, False)])
def test_full_batch_sgd_steps_equal_numpy(nesterov, bias_decay):
    X, y = blobs(n=64, f=10, c=3, seed=4)
    model = sm.SparseMLP([10, 24, 16, 3], activation=sm.AllReLU(0.5), epsilon=4, dropout=0.0,
                         seed=9)
    layers = dense_layers(model)
    acts = model._net.activations
    lr, mu, wd = 0.05, 0.9, 1e-3
    velocity = [(np.zeros_like(W), np.zeros_like(b)) for W, b in layers]
    for _ in range(3):
        _, grads = loss_and_grads(layers, acts, X, y)
        layers, velocity = sgd(layers, grads, velocity, lr, mu, wd, nesterov, bias_decay)
    model.fit(X, y, epochs=3, batch_size=64, learning_rate=lr, momentum=mu, weight_decay=wd,
              nesterov=nesterov, topology=None, shuffle=False, verbose=0, bias_decay=bias_decay)
    for (W, b), (rW, rb) in zip(dense_layers(model), layers):
        # the reference masked with W != 0; compare at the stored positions
        np.testing.assert_allclose(W, rW * (W != 0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b, rb, rtol=1e-4, atol=1e-6)


def test_a_connection_whose_weight_reaches_zero_stays():
    X, y = blobs(n=20, f=6, c=2, seed=1)
    model = sm.SparseMLP([6, 10, 2], epsilon=2, dropout=0.0, seed=0)
    st = model._net.layer_state(0)
    zeroed = st["values"].copy()
    zeroed[:5] = 0.0
    model._net.set_layer_values(0, zeroed)
    nnz = model.n_connections
    model.fit(X, y, epochs=1, batch_size=20, topology=None, verbose=0)
    assert model.n_connections == nnz


def test_dropout_gradients_differ_from_inference_but_are_reproducible():
    X, y = blobs(n=32, f=8, c=3, seed=2)
    model = sm.SparseMLP([8, 40, 3], epsilon=5, dropout=0.5, seed=1)
    plain = model._net.gradients(X, y, dropout=False)[1][0][0]
    drop1 = model._net.gradients(X, y, dropout=True)[1][0][0]
    drop2 = model._net.gradients(X, y, dropout=True)[1][0][0]
    assert not np.array_equal(plain, drop1)
    np.testing.assert_array_equal(drop1, drop2)  # same step, same masks


@pytest.mark.parametrize("init, fan_out", [("he_uniform_sparse", False), ("xavier_sparse", True)])
def test_sparse_inits_scale_by_the_real_fan_in(init, fan_out):
    model = sm.SparseMLP([784, 1000, 10], epsilon=20, init=init, seed=0)
    for layer in model.layers:
        n_in, n_out = layer.shape
        fan = layer.nnz / n_out + (layer.nnz / n_in if fan_out else 0)
        limit = np.sqrt(6 / fan)
        values = np.abs(layer.to_scipy().data)
        assert values.max() <= limit and values.max() > 0.98 * limit
    # SET's regrowth draws from the same distribution
    model._net.evolve_set(0.5)
    first = model.layers[0]
    fan = first.nnz / 1000 + (first.nnz / 784 if fan_out else 0)
    assert np.abs(first.to_scipy().data).max() <= np.sqrt(6 / fan)
