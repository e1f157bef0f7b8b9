"""Results must not depend on the number of threads."""

import numpy as np

import sparse_mlp as sm
from conftest import blobs


def train(threads):
    sm.set_num_threads(threads)
    X, y = blobs(n=300, f=40, c=5, seed=7)
    model = sm.SparseMLP([40, 120, 80, 5], activation=sm.AllReLU(0.6), epsilon=6, dropout=0.3,
                         seed=11)
    model.fit(X, y, epochs=8, batch_size=32, topology=sm.SET(0.3),
              pruning=sm.ImportancePruning(start_epoch=4, every=2, percentile=10), verbose=0)
    return [model._net.layer_state(i) for i in range(len(model.sizes) - 1)], model.predict_proba(X)


def test_same_seed_gives_bit_identical_weights_on_1_2_and_3_threads(threads):
    one, p1 = train(1)
    for n in (2, 3):
        other, pn = train(n)
        for a, b in zip(one, other):
            for k in ("col_ptr", "row_idx", "values", "momentum", "bias", "bias_momentum"):
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} differs on {n} threads")
        np.testing.assert_array_equal(p1, pn)


def test_thread_count_is_settable(threads):
    sm.set_num_threads(3)
    assert sm.get_num_threads() == 3
    import pytest

    with pytest.raises(ValueError):
        sm.set_num_threads(0)
