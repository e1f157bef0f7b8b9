import os
import sys

import numpy as np
import pytest

import sparse_mlp as sm

MADELON = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "madelon")


@pytest.fixture
def madelon_dir():
    if not os.path.exists(os.path.join(MADELON, "madelon_train.data")):
        pytest.skip("../shared/data/madelon is not present")
    return MADELON


def blobs(n=120, f=10, c=3, seed=0):
    """Small separable-ish classification data."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    centers = rng.normal(scale=2.0, size=(c, f))
    X = (centers[y] + rng.normal(size=(n, f))).astype(np.float32)
    return X, y


def dense_layers(model):
    """[(W dense float64 (n_in, n_out), bias float64)] from the model's state."""
    out = []
    for layer in model.layers:
        out.append((layer.to_scipy().toarray().astype(np.float64), layer.bias.astype(np.float64)))
    return out


def training_state(model):
    """Each layer's topology, weights, moments and bias, and the run and optimizer state."""
    out = []
    for i in range(len(model.layers)):
        st = model._net.layer_state(i)
        out.append({k: st[k].copy() for k in ("col_ptr", "row_idx", "values", "momentum", "bias",
                                              "bias_momentum", "second", "bias_second") if k in st})
    return out, (model._net.run_state, model._net.optimizer_state)


def assert_same_training_state(a, b):
    (la, ra), (lb, rb) = training_state(a), training_state(b)
    assert ra == rb
    for x, y in zip(la, lb):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def room_for(model, samples, batch_size=64):
    """Memory to report as available so that training ``model`` has room for
    everything but its buffers of ``batch_size`` samples, and buffers for
    ``samples`` samples: the batch its refusal should name."""
    est = model.memory_estimate(batch_size=batch_size)
    return (est["training_total"] - est["training_buffers"] + samples * model._net.training_bytes(1)
            - model.memory_bytes)


@pytest.fixture
def threads():
    """Restores the thread count after a test changes it."""
    before = sm.get_num_threads()
    yield
    sm.set_num_threads(before)


def pytest_terminal_summary(terminalreporter):
    """Reports how many calls the fuzz suite made, and how many were refused."""
    fuzz = sys.modules.get("test_fuzz")
    if fuzz is not None and fuzz.CASES:
        calls = sum(fuzz.CASES.values())
        refused = sum(v for (_, outcome), v in fuzz.CASES.items() if outcome == "refused")
        terminalreporter.write_line(f"fuzz cases: {calls} calls, {calls - refused} worked, "
                                    f"{refused} refused with a documented exception")
