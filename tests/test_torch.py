"""Trained models to PyTorch and back: the exported module computes what
the model computes; masked or zeroed nn.Linear stacks come back with exactly
their connections; what cannot be read gets a named error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs

torch = pytest.importorskip("torch")
nn = torch.nn
prune = pytest.importorskip("torch.nn.utils.prune")


def trained(loss="cross_entropy"):
    X, y = blobs(n=200, f=12, c=4, seed=3)
    kw = {}
    if loss == "mse":
        y = np.stack([X[:, 0] * 0.5, np.tanh(X[:, 1])], axis=1).astype(np.float32)
        kw = dict(loss="mse")
    model = sm.SparseMLP([12, 40, 30, y.shape[1] if y.ndim == 2 else 4], epsilon=5, seed=1,
                         activation=sm.AllReLU(0.6), **kw)
    model.fit(X, y, epochs=4, batch_size=32, verbose=0)
    return model, X, y


def logits(module, X):
    with torch.no_grad():
        return module(torch.from_numpy(X))


def test_the_module_holds_sparse_csr_layers_and_computes_the_probabilities():
    model, X, _ = trained()
    module = model.to_torch()
    assert not module.training
    layers = list(module.layers)
    assert [(m.in_features, m.out_features) for m in layers] == [(12, 40), (40, 30), (30, 4)]
    assert all(m.weight.layout == torch.sparse_csr for m in layers)
    assert sum(int(m.weight.values().numel()) for m in layers) == model.n_connections
    assert module.activations == [("leaky", pytest.approx(-0.6)), ("leaky", pytest.approx(0.6))]
    p = torch.softmax(logits(module, X), dim=1).numpy()
    np.testing.assert_allclose(p, model.predict_proba(X), atol=1e-6)
    # as nn.Linear stores them: W (out × in) dense equals the model's (in × out) transposed
    np.testing.assert_array_equal(layers[0].weight.to_dense().numpy(), model.to_scipy()[0].toarray().T)


def test_a_regression_model_exports_its_outputs():
    model, X, _ = trained("mse")
    np.testing.assert_allclose(logits(model.to_torch(), X).numpy(), model.predict(X), atol=1e-5)


def test_to_torch_and_back_is_the_same_model():
    model, X, y = trained()
    back = sm.SparseMLP.from_torch(model.to_torch(), seed=model.seed)
    for a, b in zip(back.to_scipy(), model.to_scipy()):
        assert (a != b).nnz == 0 and a.nnz == b.nnz
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    back.fit(X, y, epochs=1, verbose=0)  # and it trains on


def test_a_masked_linear_stack_keeps_exactly_the_unmasked_connections():
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Flatten(), nn.Linear(12, 50), nn.LeakyReLU(0.1), nn.Dropout(0.3),
                          nn.Linear(50, 20), nn.Tanh(), nn.Linear(20, 4))
    prune.random_unstructured(stack[1], "weight", amount=0.9)
    prune.l1_unstructured(stack[4], "weight", amount=0.7)
    kept = torch.nonzero(stack[1].weight_mask)[0]
    with torch.no_grad():  # an unmasked weight that is exactly zero stays a connection
        stack[1].weight_orig[kept[0], kept[1]] = 0.0
    # the masks give the first two layers' connections; threshold 0 the last's
    model = sm.SparseMLP.from_torch(stack, threshold=0.0)
    masks = [stack[1].weight_mask, stack[4].weight_mask]
    for W, mask in zip(model.to_scipy()[:2], masks):
        np.testing.assert_array_equal(_explicit(W), mask.numpy().T.astype(bool))
    assert model.to_scipy()[0][int(kept[1]), int(kept[0])] == 0.0
    assert model.to_scipy()[2].nnz == 20 * 4  # no zeros there: every weight is a connection
    X = np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)
    expected = torch.softmax(logits(stack.eval(), X), dim=1).numpy()
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-6)


def _explicit(W):
    """Positions stored in a scipy matrix (explicit zeros included)."""
    coo = W.tocoo()
    stored = np.zeros(W.shape, bool)
    stored[coo.row, coo.col] = True
    return stored


def test_dense_weights_need_a_threshold_and_zeros_are_gaps():
    torch.manual_seed(1)
    stack = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(sm.InvalidInputError, match="threshold="):
        sm.SparseMLP.from_torch(stack)
    model = sm.SparseMLP.from_torch(stack, threshold=0.2)
    for W, lin in zip(model.to_scipy(), (stack[0], stack[2])):
        assert W.nnz == int((lin.weight.abs() > 0.2).sum())
    with torch.no_grad():
        stack[0].weight[stack[0].weight.abs() < 0.1] = 0.0
        stack[2].weight[:, ::2] = 0.0
    zeros = sm.SparseMLP.from_torch(stack)
    assert zeros.to_scipy()[0].nnz == int((stack[0].weight != 0).sum())


@pytest.mark.parametrize("module, match", [
    (lambda: nn.Sequential(nn.Conv1d(1, 2, 3)), "Conv1d.*not supported"),
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(6, 2)), "takes 6 inputs"),
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2)), "without an activation"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Linear(5, 2)), "must follow a linear layer"),
    (lambda: nn.Sequential(nn.Linear(4, 5), nn.ReLU()), "ends in an activation"),
    (lambda: nn.Sequential(nn.Dropout()), "no nn.Linear"),
    (lambda: "a string", "takes a torch.nn.Module"),
])
def test_modules_that_cannot_be_read_get_a_named_error(module, match):
    with pytest.raises(sm.InvalidInputError, match=match):
        sm.SparseMLP.from_torch(module(), threshold=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_the_module_runs_on_cuda():
    model, X, _ = trained()
    p = torch.softmax(logits(model.to_torch("cuda"), torch.from_numpy(X).cuda()), 1).cpu().numpy()
    np.testing.assert_allclose(p, model.predict_proba(X), atol=1e-5)


def test_the_package_imports_and_refuses_clearly_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import sparse_mlp as sm\n"
            "m = sm.SparseMLP([4, 8, 2], epsilon=2, seed=0)\n"
            "try:\n    m.to_torch()\nexcept sm.InvalidInputError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pip install torch" in r.stdout


def test_a_model_from_torch_trains_like_one_from_scipy():
    model, X, y = trained()
    a = sm.SparseMLP.from_torch(model.to_torch(), seed=5)
    b = sm.SparseMLP.from_scipy(model.to_scipy(), [lay.bias for lay in model.layers],
                                activation=sm.AllReLU(0.6), seed=5)
    for m in (a, b):
        m.fit(X, y, epochs=2, verbose=0)
    assert_same_training_state(a, b)


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), float("inf"), "big"])
def test_a_bad_threshold_is_refused(threshold):
    stack = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(sm.InvalidInputError, match="threshold"):
        sm.SparseMLP.from_torch(stack, threshold=threshold)


def test_an_unknown_device_is_refused():
    model, _, _ = trained()
    with pytest.raises(sm.InvalidInputError, match="device 'warp-drive'"):
        model.to_torch("warp-drive")
