"""WASAP-SGD building blocks: stale gradients mapped onto a new topology."""

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import blobs


def dense(n_in, n_out, col_ptr, row_idx, values):
    """(dense matrix, set of (i, j) connections) of CSC arrays."""
    cols = np.repeat(np.arange(n_out), np.diff(col_ptr))
    d = np.zeros((n_in, n_out), dtype=np.float32)
    d[row_idx, cols] = values
    return d, set(zip(row_idx.tolist(), cols.tolist()))


def test_stale_gradient_is_mapped_onto_the_topology_after_a_set_step():
    X, y = blobs(n=200, f=30, c=3)
    model = sm.SparseMLP([30, 60, 40, 3], epsilon=5, seed=2)
    model.fit(X, y, epochs=1, batch_size=20, topology=None, verbose=0)
    rng = np.random.default_rng(0)
    old = [model._net.layer_state(i) for i in range(3)]
    grads = [rng.standard_normal(s["values"].size).astype(np.float32) for s in old]
    model._net.evolve_set(0.3)
    for layer, (a, g) in enumerate(zip(old, grads)):
        b = model._net.layer_state(layer)
        mapped, dropped = sm._core.remap_values(a["col_ptr"], a["row_idx"], g,
                                                b["col_ptr"], b["row_idx"])
        g_dense, conn_a = dense(a["n_in"], a["n_out"], a["col_ptr"], a["row_idx"], g)
        _, conn_b = dense(b["n_in"], b["n_out"], b["col_ptr"], b["row_idx"], b["values"])
        cols = np.repeat(np.arange(b["n_out"]), np.diff(b["col_ptr"]))
        expected = np.where([(i, j) in conn_a for i, j in zip(b["row_idx"], cols)],
                            g_dense[b["row_idx"], cols], 0.0)
        np.testing.assert_array_equal(mapped, expected.astype(np.float32))
        assert dropped == len(conn_a - conn_b)
        if layer < 2:  # SET changed the hidden layers, so something was dropped
            assert dropped > 0


def test_remap_rejects_mismatched_and_unsorted_topologies():
    ptr = np.array([0, 2, 3])
    rows = np.array([1, 4, 0])
    v = np.ones(3, dtype=np.float32)
    with pytest.raises(sm.InvalidInputError, match="not sorted"):
        sm._core.remap_values(ptr, np.array([4, 1, 0]), v, ptr, rows)
    with pytest.raises(sm.InvalidInputError, match="outputs"):
        sm._core.remap_values(ptr, rows, v, np.array([0, 3]), rows)
    with pytest.raises(sm.InvalidInputError, match="values"):
        sm._core.remap_values(ptr, rows, v[:2], ptr, rows)
    with pytest.raises(sm.InvalidInputError, match="not a valid index"):
        sm._core.remap_values(ptr, np.array([1, -4, 0]), v, ptr, rows)
