import os

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


@pytest.fixture
def threads():
    """Restores the thread count after a test changes it."""
    before = sm.get_num_threads()
    yield
    sm.set_num_threads(before)
