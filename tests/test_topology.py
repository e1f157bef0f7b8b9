"""SET, Erdős–Rényi counts, importance and Importance Pruning."""

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import blobs, dense_layers


def connections(layer):
    """{(i, j): (value, momentum)} of a layer."""
    st = layer._state()
    cols = np.repeat(np.arange(layer.shape[1]), np.diff(st["col_ptr"]))
    return {(int(i), int(j)): (float(v), float(m))
            for i, j, v, m in zip(st["row_idx"], cols, st["values"], st["momentum"])}


def assert_valid_structure(layer):
    st = layer._state()
    n_in, n_out = layer.shape
    ptr, rows = st["col_ptr"], st["row_idx"]
    assert ptr[0] == 0 and ptr[-1] == rows.size == layer.nnz
    assert np.all(np.diff(ptr) >= 0)
    assert rows.min(initial=0) >= 0 and rows.max(initial=0) < n_in
    for j in range(n_out):
        col = rows[ptr[j]:ptr[j + 1]]
        assert np.all(np.diff(col) > 0), f"column {j} has duplicate or unsorted rows"


@pytest.mark.parametrize("sizes, eps", [([784, 1000, 1000, 10], 20), ([500, 400, 100, 400, 2], 10),
                                        ([3, 5, 2], 1), ([1000, 7], 1)])
def test_erdos_renyi_counts_match_the_formula(sizes, eps):
    model = sm.SparseMLP(sizes, epsilon=eps, seed=0)
    for layer, (n_in, n_out) in zip(model.layers, zip(sizes[:-1], sizes[1:])):
        d = min(1.0, eps * (n_in + n_out) / (n_in * n_out))
        assert layer.nnz == round(d * n_in * n_out)
        assert_valid_structure(layer)


def test_erk_and_uniform_density_hit_the_global_budget():
    sizes = [784, 300, 100, 10]
    dense_total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    for dist in ("erk", "uniform"):
        counts = sm.connection_counts(sizes, density=0.1, distribution=dist)
        assert sum(counts) == pytest.approx(0.1 * dense_total, rel=0.01)
    erk = sm.connection_counts(sizes, density=0.1, distribution="erk")
    densities = [c / (a * b) for c, (a, b) in zip(erk, zip(sizes[:-1], sizes[1:]))]
    assert densities[0] < densities[1] < densities[2] <= 1.0  # ERK favours small layers
    with pytest.raises(sm.InvalidInputError):
        sm.connection_counts(sizes, epsilon=5, density=0.1)


def test_initial_values_follow_the_init_distribution():
    sizes = [400, 300, 2]
    he = sm.SparseMLP(sizes, epsilon=20, init="he_uniform", seed=0).layers[0]._state()["values"]
    assert np.abs(he).max() <= np.sqrt(6 / 400)
    assert np.std(he) == pytest.approx(np.sqrt(6 / 400) / np.sqrt(3), rel=0.05)
    xa = sm.SparseMLP(sizes, epsilon=20, init="xavier", seed=0).layers[0]._state()["values"]
    assert np.abs(xa).max() <= np.sqrt(6 / 700)
    no = sm.SparseMLP(sizes, epsilon=20, init="normal", seed=0).layers[0]._state()["values"]
    assert np.std(no) == pytest.approx(0.1, rel=0.05)


def test_set_keeps_nnz_removes_exactly_zeta_per_sign_and_resets_momentum():
    X, y = blobs(n=200, f=30, c=3)
    model = sm.SparseMLP([30, 60, 40, 3], epsilon=5, seed=2)
    model.fit(X, y, epochs=2, batch_size=20, topology=None, verbose=0)  # nonzero momentum
    zeta = 0.3
    before = [connections(layer) for layer in model.layers]
    steps = model._net.evolve_set(zeta)
    for layer, old, (rem_pos, rem_neg) in zip(model.layers, before, steps):
        assert_valid_structure(layer)
        assert layer.nnz == len(old)
        new = connections(layer)
        if layer.density == 1.0:
            assert (rem_pos, rem_neg) == (0, 0) and new == old  # dense output layer untouched
            continue
        pos = sorted(v for v, _ in old.values() if v >= 0)
        neg = sorted((v for v, _ in old.values() if v < 0), reverse=True)
        assert rem_pos == round(zeta * len(pos)) and rem_neg == round(zeta * len(neg))
        survivors = {k for k in old if k in new and new[k] == old[k]}
        removed = [old[k][0] for k in old if k not in survivors]
        assert len(removed) == rem_pos + rem_neg
        # the removed are the ones closest to zero, per sign
        assert max(v for v in removed if v >= 0) <= pos[rem_pos]
        assert min(v for v in removed if v < 0) >= neg[rem_neg]
        fresh = [k for k in new if k not in survivors]
        assert len(fresh) == rem_pos + rem_neg
        assert all(new[k][1] == 0.0 for k in fresh)


def test_set_over_many_epochs_preserves_every_layer_count():
    X, y = blobs(n=100, f=20, c=2)
    model = sm.SparseMLP([20, 50, 50, 2], epsilon=4, seed=1)
    counts = [layer.nnz for layer in model.layers]
    history = model.fit(X, y, epochs=6, batch_size=10, topology=sm.SET(0.5), verbose=0)
    assert [layer.nnz for layer in model.layers] == counts
    assert all(r["set_regrown"] > 0 for r in history[:-1])
    assert "set_regrown" not in history[-1]  # no evolution after the last epoch
    for layer in model.layers:
        assert_valid_structure(layer)


def test_importance_is_the_sum_of_absolute_incoming_weights():
    model = sm.SparseMLP([20, 30, 10, 2], epsilon=3, seed=4)
    for h in range(2):
        W = model.layers[h].to_scipy().toarray()
        np.testing.assert_allclose(model._net.neuron_importance(h), np.abs(W).sum(axis=0),
                                   rtol=1e-6)
        np.testing.assert_allclose(model.layers[h].importance(), np.abs(W).sum(axis=0), rtol=1e-6)


def test_importance_pruning_really_removes_neurons():
    X, y = blobs(n=100, f=20, c=3)
    model = sm.SparseMLP([20, 40, 30, 3], epsilon=4, seed=3)
    model.fit(X, y, epochs=2, batch_size=10, topology=None, verbose=0)
    before = dense_layers(model)
    strength = [model._net.neuron_importance(h) for h in range(2)]
    pruning = sm.ImportancePruning(start_epoch=1, every=1, percentile=25, shrink=True)
    record = pruning.on_epoch_end(model, 1, 10)
    keeps = [s > np.percentile(s, 25) for s in strength]
    assert record["pruned_neurons"] == [int((~k).sum()) for k in keeps]
    assert model.sizes == [20, int(keeps[0].sum()), int(keeps[1].sum()), 3]
    after = dense_layers(model)
    # layer 0 lost columns, layer 1 lost rows and columns, layer 2 lost rows
    np.testing.assert_array_equal(after[0][0], before[0][0][:, keeps[0]])
    np.testing.assert_array_equal(after[0][1], before[0][1][keeps[0]])
    np.testing.assert_array_equal(after[1][0], before[1][0][keeps[0]][:, keeps[1]])
    np.testing.assert_array_equal(after[2][0], before[2][0][keeps[1]])
    np.testing.assert_array_equal(after[2][1], before[2][1])
    assert model.n_connections == sum(int((W != 0).sum()) for W, _ in after)
    # training continues on the smaller network, and SET only grows inside it
    model.fit(X, y, epochs=2, batch_size=10, verbose=0)
    assert model.sizes[1] == int(keeps[0].sum())


def test_pruning_schedule_and_floor():
    p = sm.ImportancePruning(start_epoch=5, every=3, percentile=50)
    assert [e for e in range(1, 15) if p.is_due(e, 14)] == [5, 8, 11]
    assert not p.is_due(14, 14)  # never after the last epoch
    floor = sm.ImportancePruning(percentile=100, min_neurons=2)
    ids = floor.select(np.array([3.0, 1.0, 2.0, 5.0]))
    assert list(ids) == [1, 2]  # the two weakest; two neurons stay


def test_fit_with_pruning_lowers_connections_permanently():
    X, y = blobs(n=120, f=20, c=3)
    model = sm.SparseMLP([20, 60, 60, 3], epsilon=5, seed=0)
    history = model.fit(X, y, epochs=8, batch_size=20,
                        pruning=sm.ImportancePruning(start_epoch=2, every=2, percentile=20, shrink=True),
                        verbose=0)
    nnz = [r["n_connections"] for r in history]
    assert nnz[-1] < nnz[0]
    assert all(a >= b for a, b in zip(nnz, nnz[1:]))
    assert [bool(r.get("pruned_neurons")) for r in history] == [False, True, False, True,
                                                                 False, True, False, False]


def test_pruning_without_shrinking_empties_neurons_and_keeps_the_width():
    X, y = blobs(n=100, f=20, c=3)
    model = sm.SparseMLP([20, 40, 30, 3], epsilon=4, seed=3)
    model.fit(X, y, epochs=2, batch_size=10, topology=None, verbose=0)
    before = dense_layers(model)
    strength = [model._net.neuron_importance(h) for h in range(2)]
    record = sm.ImportancePruning(1, 1, percentile=25, shrink=False).on_epoch_end(model, 1, 10)
    dead = [s <= np.percentile(s, 25) for s in strength]
    assert record["pruned_neurons"] == [int(d.sum()) for d in dead]
    assert model.sizes == [20, 40, 30, 3]
    after = dense_layers(model)
    # emptied neurons: no incoming, no outgoing, zero bias; everything else unchanged
    np.testing.assert_array_equal(after[0][0], np.where(dead[0], 0, before[0][0]))
    np.testing.assert_array_equal(after[0][1], np.where(dead[0], 0, before[0][1]))
    expect_1 = np.where(dead[1], 0, before[1][0])
    expect_1[dead[0], :] = 0
    np.testing.assert_array_equal(after[1][0], expect_1)
    expect_2 = before[2][0].copy()
    expect_2[dead[1], :] = 0
    np.testing.assert_array_equal(after[2][0], expect_2)
    assert model.n_connections == sum(int((W != 0).sum()) for W, _ in after)
    # SET regrowth may connect the empty slots again
    nnz = model.n_connections
    for _ in range(5):
        model._net.evolve_set(0.5)
    assert model.n_connections == nnz
    regrown = model.layers[0].to_scipy().toarray()[:, dead[0]]
    assert (regrown != 0).any()


@pytest.mark.parametrize("shrink", [True, False])
def test_a_connection_budget_leaves_its_share_of_the_connections(shrink):
    X, y = blobs(n=200, f=20, c=3)
    model = sm.SparseMLP([20, 80, 60, 3], epsilon=5, seed=2)
    pruning = sm.ImportancePruning(start_epoch=3, every=2, keep=0.25, events=4, shrink=shrink)
    assert pruning.budget == 0.25 and pruning.count(30) == 4
    history = model.fit(X, y, epochs=30, batch_size=20, pruning=pruning, verbose=0)
    events = [r["epoch"] for r in history if r.get("pruned_neurons")]
    assert events == [3, 5, 7, 9]
    before = history[2]["n_connections"]  # measured before the first event
    after = model.n_connections
    # each event removes the smallest share of neurons that meets its quota,
    # so the result is at most the budget and close to it
    assert 0.8 * 0.25 * before <= after <= 0.25 * before
    assert (model.sizes[1:-1] == [80, 60]) != shrink
    # every layer lost the same share of its neurons at each event
    for r in history:
        if r.get("pruned_neurons"):
            widths = [80, 60] if not shrink else None
            if widths:
                shares = [k / w for k, w in zip(r["pruned_neurons"], widths)]
                assert abs(shares[0] - shares[1]) < 0.05


def test_the_default_pruning_is_a_budget_and_a_percentile_is_the_old_rule():
    default = sm.ImportancePruning()
    assert (default.start_epoch, default.every, default.budget, default.max_events) == (200, 10, 0.15, 8)
    assert default.shrink is False
    assert sm.ImportancePruning(percentile=20).budget is None
    assert sm.ImportancePruning(percentile=20).max_events is None
    assert [e for e in range(1, 500) if default.is_due(e, 500)] == list(range(200, 280, 10))
    with pytest.raises(sm.InvalidInputError, match="either percentile .* or keep"):
        sm.ImportancePruning(percentile=20, keep=0.2)
    for bad in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(sm.InvalidInputError, match="keep"):
            sm.ImportancePruning(keep=bad)
    with pytest.raises(sm.InvalidInputError, match="events"):
        sm.ImportancePruning(events=0)


def test_set_on_chosen_layers_only():
    X, y = blobs(n=100, f=20, c=3)
    model = sm.SparseMLP([20, 40, 30, 3], epsilon=3, seed=1)
    before = [layer.to_scipy() for layer in model.layers]
    steps = model._net.evolve_set(0.3, [1])
    assert steps[0] == (0, 0) and steps[2] == (0, 0) and sum(steps[1]) > 0
    after = [layer.to_scipy() for layer in model.layers]
    assert (before[0] != after[0]).nnz == 0 and (before[2] != after[2]).nnz == 0
    assert (before[1] != after[1]).nnz > 0
    first = model.layers[1].to_scipy()
    model.fit(X, y, epochs=3, verbose=0, topology=sm.SET(0.3, layers=[0]))
    assert (model.layers[1].to_scipy() != 0).toarray().tolist() == (first != 0).toarray().tolist()
    with pytest.raises(sm.InvalidInputError, match="layer 7 does not exist"):
        model._net.evolve_set(0.3, [7])
    for bad in ("0", [0, 0], [-1]):
        with pytest.raises(sm.InvalidInputError):
            sm.SET(layers=bad)
