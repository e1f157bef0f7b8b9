"""Real data: Madelon with the paper's settings (SPEC §8), 500 epochs."""

import numpy as np

import sparse_mlp as sm
from sparse_mlp.datasets import load_madelon


def fit(data, pruning):
    model = sm.SparseMLP([500, 400, 100, 400, 2], activation=sm.AllReLU(0.5), epsilon=10,
                         init="normal", dropout=0.3, seed=0)
    history = model.fit(data.X_train, data.y_train, epochs=500, batch_size=32, learning_rate=0.01,
                        momentum=0.9, weight_decay=2e-4, topology=sm.SET(0.3), pruning=pruning,
                        validation_data=(data.X_test, data.y_test), verbose=0)
    return model, history


def test_loader_reads_the_real_files(madelon_dir):
    data = load_madelon(madelon_dir)
    assert data.X_train.shape == (2000, 500) and data.X_test.shape == (600, 500)
    assert data.X_train.dtype == np.float32
    assert sorted(np.unique(data.y_train)) == [0, 1] and data.y_train.sum() == 1000
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-4)


def test_set_all_relu_reaches_the_papers_accuracy(madelon_dir):
    data = load_madelon(madelon_dir)
    model, history = fit(data, None)
    best = max(r["val_accuracy"] for r in history)
    assert best >= 0.69, best  # paper: 71.33 %; the prototype on this machine: 70.0 %
    assert model.n_connections == 19_800


def test_the_default_pruning_reproduces_the_papers_row(madelon_dir):
    data = load_madelon(madelon_dir)
    model, history = fit(data, sm.ImportancePruning(start_epoch=200))
    best = max(r["val_accuracy"] for r in history)
    assert best >= 0.75, best  # seed 0: 78.33 %; 5 seeds 76.50 ± 1.07 % (paper: 77.00 %)
    # a budget of 15 % of the connections (paper: 14 %), the layers' width kept
    assert 0.13 * 19_800 <= model.n_connections <= 0.15 * 19_800
    assert model.sizes == [500, 400, 100, 400, 2]
    assert [r["epoch"] for r in history if r.get("pruned_neurons")] == list(range(200, 280, 10))


def test_importance_pruning_shrinks_the_network_and_keeps_it_accurate(madelon_dir):
    data = load_madelon(madelon_dir)
    model, history = fit(data, sm.ImportancePruning(start_epoch=200, every=20, percentile=10,
                                                    shrink=True))
    assert model.n_connections < 0.25 * 19_800
    assert model.sizes[1] < 0.25 * 400
    late = [r["val_accuracy"] for r in history[-50:]]
    assert np.mean(late) > 0.6, np.mean(late)  # chance is 0.5
