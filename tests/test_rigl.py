"""RigL's building blocks in the core (the issue's first part): the gradients
of missing connections from a batch's feature-major activations and errors,
found exactly or among candidates, and the prune-and-grow step; checked
against a dense numpy RigL on small layers."""

import numpy as np
import pytest

import sparse_mlp as sm
from sparse_mlp import _core


def setup(seed=0, sizes=(40, 70, 5), batch=9):
    model = sm.SparseMLP(list(sizes), epsilon=3, seed=seed)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((sizes[0], batch)).astype(np.float32)
    delta = rng.standard_normal((sizes[1], batch)).astype(np.float32)
    return model, a, delta


def dense_rigl(model, a, delta):
    """Every missing position of layer 0 with its gradient, ranked by |g| (numpy, float64)."""
    w = model.layers[0].to_scipy().toarray()  # n_in x n_out
    g = a.astype(np.float64) @ delta.astype(np.float64).T / a.shape[1]
    rows, cols = np.nonzero(w == 0)
    positions = cols.astype(np.uint64) * w.shape[0] + rows
    grads = g[rows, cols]
    order = np.argsort(-np.abs(grads), kind="stable")
    return positions[order], grads[order]


def test_the_exact_search_finds_the_dense_reference_top_k():
    model, a, delta = setup()
    want_pos, want_g = dense_rigl(model, a, delta)
    pos, g = model._net.rigl_exact(0, a, delta, 60, 7)
    assert pos.dtype == np.uint64 and len(pos) == 60
    assert set(pos.tolist()) == set(want_pos[:60].tolist())
    np.testing.assert_allclose(g, want_g[:60], rtol=1e-6)
    assert np.all(np.diff(np.abs(g)) <= 0), "best first"
    # k beyond the missing positions: all of them
    missing = len(want_pos)
    assert len(model._net.rigl_exact(0, a, delta, 10 * missing, 7)[0]) == missing


def test_candidates_covering_every_missing_position_give_the_exact_result():
    model, a, delta = setup(1)
    net = model._net
    candidates = net.rigl_candidates(0, 10**6, 3)
    assert len(candidates) == len(set(candidates.tolist())) == 40 * 70 - model.layers[0].nnz
    sums = np.zeros(len(candidates), np.float32)
    net.rigl_accumulate(0, candidates, a, delta, sums)
    top = _core.rigl_top(candidates, sums, 50, 5)
    exact = net.rigl_exact(0, a, delta, 50, 5)
    np.testing.assert_array_equal(top[0], exact[0])
    np.testing.assert_array_equal(top[1], exact[1])
    # fewer candidates: distinct missing positions, the same for the same seed
    few = net.rigl_candidates(0, 100, 3)
    assert len(set(few.tolist())) == 100 and set(few.tolist()) <= set(candidates.tolist())
    np.testing.assert_array_equal(few, net.rigl_candidates(0, 100, 3))


def test_one_and_several_threads_give_the_same_bits():
    model, a, delta = setup(2, sizes=(300, 400, 3), batch=16)
    results, previous = [], _core.get_num_threads()
    try:
        for threads in (1, 2, 3):
            sm.set_num_threads(threads)
            results.append(model._net.rigl_exact(0, a, delta, 500, 1))
    finally:
        sm.set_num_threads(previous)
    for pos, g in results[1:]:
        np.testing.assert_array_equal(pos, results[0][0])
        np.testing.assert_array_equal(g.view(np.uint32), results[0][1].view(np.uint32))


def test_prune_and_grow_keeps_nnz_and_grows_the_offered_positions():
    model, a, delta = setup(3)
    net = model._net
    nnz, version = model.layers[0].nnz, net.run_state[3]
    pos, g = net.rigl_exact(0, a, delta, 10**6, 0)
    removed_pos, removed_neg, grown = net.rigl_prune_grow(0, 0.3, pos, g, init_lr=0.1)
    n = removed_pos + removed_neg
    assert n > 0 and model.layers[0].nnz == nnz and net.run_state[3] == version + 1
    np.testing.assert_array_equal(grown, np.sort(pos[:n]))
    w = model.layers[0].to_scipy().toarray()
    rows, cols = (grown % 40).astype(int), (grown // 40).astype(int)
    np.testing.assert_array_equal(w[rows, cols], (-np.float32(0.1) * g[:n])[np.argsort(pos[:n])])
    stored = model.layers[0].to_scipy()
    assert stored.nnz == nnz and stored.has_canonical_format


def test_bad_arguments_are_refused_and_change_nothing():
    model, a, delta = setup(4)
    net = model._net
    with pytest.raises(sm.InvalidInputError):
        net.rigl_exact(0, a[:-1], delta, 5, 0)  # not n_in rows
    with pytest.raises(sm.InvalidInputError):
        net.rigl_exact(0, a, delta[:, :-1], 5, 0)  # another batch size
    with pytest.raises(sm.InvalidInputError):
        net.rigl_exact(7, a, delta, 5, 0)
    with pytest.raises(TypeError):
        net.rigl_exact(0, np.asfortranarray(a), delta, 5, 0)
    with pytest.raises(sm.InvalidInputError):
        net.rigl_accumulate(0, np.array([0, 1], np.uint64), a, delta, np.zeros(3, np.float32))
    with pytest.raises(sm.InvalidInputError):
        net.rigl_accumulate(0, np.array([40 * 70], np.uint64), a, delta, np.zeros(1, np.float32))
    before = model.layers[0].to_scipy().toarray()
    rows, cols = np.nonzero(before)
    existing = np.uint64(cols[0] * 40 + rows[0])
    with pytest.raises(sm.InvalidInputError):
        net.rigl_prune_grow(0, 0.3, np.array([existing], np.uint64), np.ones(1, np.float32))
    with pytest.raises(sm.InvalidInputError):
        net.rigl_prune_grow(0, 0.3, np.array([1, 2], np.uint64), np.ones(1, np.float32))
    with pytest.raises(sm.InvalidInputError):
        net.rigl_prune_grow(0, 1.5, np.array([], np.uint64), np.ones(0, np.float32))
    np.testing.assert_array_equal(model.layers[0].to_scipy().toarray(), before)
