"""Neuron recycling (SPEC §7): each strategy changes exactly the neurons it
selects, against dense numpy references of the selection criteria."""

import logging

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import blobs, dense_layers

SGD = dict(learning_rate=0.05, momentum=0.9, weight_decay=1e-4)


def trained(sizes=(10, 40, 30, 3), seed=0, activation="relu", dropout=0.0, epochs=2):
    X, y = blobs(n=160, f=sizes[0], c=sizes[-1], seed=seed)
    model = sm.SparseMLP(list(sizes), activation=activation, epsilon=4, dropout=dropout, seed=seed)
    model.fit(X, y, epochs=epochs, batch_size=16, topology=None, verbose=0, **SGD)
    return model, X, y


def states(model):
    return [model._net.layer_state(i) for i in range(len(model.sizes) - 1)]


def connections(st, side, j):
    """{(row, col): (value, momentum)} of neuron j's column (side='in') or row (side='out')."""
    cols = np.repeat(np.arange(st["n_out"]), np.diff(st["col_ptr"]))
    rows = st["row_idx"]
    sel = cols == j if side == "in" else rows == j
    return {(int(r), int(c)): (float(v), float(m))
            for r, c, v, m in zip(rows[sel], cols[sel], st["values"][sel], st["momentum"][sel])}


def changed_neurons(before, after, h):
    """Neurons of hidden layer h whose column, row or bias changed."""
    a0, a1, b0, b1 = before[h], after[h], before[h + 1], after[h + 1]
    out = []
    for j in range(a0["n_out"]):
        if (connections(a0, "in", j) != connections(a1, "in", j)
                or connections(b0, "out", j) != connections(b1, "out", j)
                or a0["bias"][j] != a1["bias"][j]):
            out.append(j)
    return np.array(out, dtype=np.int64)


def dense_magnitudes(model, h):
    layers = dense_layers(model)
    w_in, w_out = layers[h][0], layers[h + 1][0]
    return np.linalg.norm(w_in, axis=0) * np.linalg.norm(w_out, axis=1)


def check_recycled(before, after, h, ids, outgoing="reinit"):
    """Counts kept, momentum and bias of the recycled neurons zero, and
    every other layer untouched."""
    for j in ids:
        old_in, new_in = connections(before[h], "in", j), connections(after[h], "in", j)
        assert len(new_in) == len(old_in)
        assert all(m == 0.0 for _, m in new_in.values())
        old_out, new_out = connections(before[h + 1], "out", j), connections(after[h + 1], "out", j)
        assert len(new_out) == len(old_out)
        if outgoing == "keep":
            assert new_out == old_out
        else:
            assert all(m == 0.0 for _, m in new_out.values())
        if outgoing == "zero":
            assert all(v == 0.0 for v, _ in new_out.values())
        assert after[h]["bias"][j] == 0.0 and after[h]["bias_momentum"][j] == 0.0
    for layer in range(len(before)):
        assert after[layer]["values"].size == before[layer]["values"].size  # nnz unchanged
        if layer not in (h, h + 1):
            for key in ("col_ptr", "row_idx", "values", "momentum", "bias"):
                np.testing.assert_array_equal(after[layer][key], before[layer][key])


@pytest.mark.parametrize("reinit", ["initial", "matrix_normal", "copy", "zero"])
@pytest.mark.parametrize("outgoing", ["reinit", "zero", "keep"])
def test_magnitude_recycling_changes_exactly_the_smallest_neurons(reinit, outgoing):
    model, X, y = trained()
    h = 1
    expected = np.sort(np.argsort(dense_magnitudes(model, h), kind="stable")[:3])
    run = sm.NeuronRecycling(fraction=0.1, reinit=reinit, outgoing=outgoing, layers=[h],
                             probe=0).start(model, X, y)
    before = states(model)
    record = run.event(step=1, epoch=1)
    after = states(model)
    assert record["recycled"] == [3]
    np.testing.assert_array_equal(changed_neurons(before, after, h), expected)
    check_recycled(before, after, h, expected, outgoing)
    # the recorded magnitudes are those of the dense reference
    mags = dense_magnitudes_from(before, h)
    assert record["magnitude_recycled"][0] == pytest.approx(mags[expected].mean(), rel=1e-5)


def dense_magnitudes_from(st, h):
    def dense(s):
        w = np.zeros((s["n_in"], s["n_out"]))
        cols = np.repeat(np.arange(s["n_out"]), np.diff(s["col_ptr"]))
        w[s["row_idx"], cols] = s["values"]
        return w
    return np.linalg.norm(dense(st[h]), axis=0) * np.linalg.norm(dense(st[h + 1]), axis=1)


@pytest.mark.parametrize("select", ["random", "largest"])
def test_control_selections(select):
    model, X, y = trained(seed=1)
    h = 0
    mags = dense_magnitudes(model, h)
    run = sm.NeuronRecycling(select=select, fraction=0.1, layers=[h], probe=0).start(model, X, y)
    before = states(model)
    run.event(step=1, epoch=1)
    ids = changed_neurons(before, states(model), h)
    assert ids.size == 4
    if select == "largest":
        np.testing.assert_array_equal(ids, np.sort(np.argsort(-mags, kind="stable")[:4]))
    check_recycled(before, states(model), h, ids)


def test_immunity_spares_recycled_neurons_from_reselection_and_from_set():
    # reinit="zero" leaves recycled neurons with magnitude 0, the smallest
    # there is, so without immunity the same neurons come back every round.
    for immunity, expect_repeat in [(0, True), (2, False)]:
        model, X, y = trained()
        run = sm.NeuronRecycling(fraction=0.1, reinit="zero", immunity=immunity, layers=[0],
                                 probe=0).start(model, X, y)
        before = states(model)
        run.event(1, 1)
        first = changed_neurons(before, states(model), 0)
        before = states(model)
        second_rec = run.event(2, 1)
        second = changed_neurons(before, states(model), 0)
        assert first.size == second.size == 4
        assert second_rec["overlap"] == [1.0 if expect_repeat else 0.0]
        if expect_repeat:  # the zero neurons again (new positions, still zero)
            np.testing.assert_array_equal(second, first)
        else:
            assert np.intersect1d(first, second).size == 0
    # round 3 still immune, round 4 free again
    third = run.event(3, 1)
    assert third["overlap"] == [0.0]
    before = states(model)
    run.event(4, 1)
    np.testing.assert_array_equal(changed_neurons(before, states(model), 0), first)
    # SET does not prune the protected (zero) connections of the last event's neurons
    st = states(model)
    protected = np.flatnonzero(run.immune_until[0] >= run.round)
    keep_in = {j: connections(st[0], "in", j) for j in protected}
    model._net.evolve_set(1.0)
    st2 = states(model)
    for j in protected:
        for key, (v, _) in keep_in[j].items():
            assert connections(st2[0], "in", j)[key][0] == v


def test_interpolation_moves_linearly_and_reaches_the_new_weights():
    model, X, y = trained()
    net, h, T = model._net, 0, 5
    ids = np.array([2, 7, 11], dtype=np.int64)
    before = states(model)
    net.recycle_neurons(h, ids, "initial", "reinit", T)
    at_event = states(model)
    for layer in (h, h + 1):
        np.testing.assert_array_equal(at_event[layer]["values"], before[layer]["values"])
    check_recycled_momentum = [connections(at_event[h], "in", j) for j in ids]
    assert all(m == 0.0 for conns in check_recycled_momentum for _, m in conns.values())
    assert net.pending_blends == 1
    order = net.epoch_order(len(y), False)
    tiny = dict(learning_rate=1e-30, momentum=0.0, weight_decay=0.0)
    snaps = [at_event]
    for t in range(T + 3):
        net.train_epoch(X, y, 16, tiny["learning_rate"], 0.0, 0.0, order=order[t * 16:(t + 1) * 16])
        snaps.append(states(model))
    assert net.pending_blends == 0
    v0, v1, vT = (snaps[i][h]["values"] for i in (0, 1, T))
    np.testing.assert_allclose(vT, v0 + T * (v1 - v0), atol=1e-6)
    np.testing.assert_array_equal(snaps[T + 3][h]["values"], vT)  # α stays at 1
    # the targets are draws of the initial (He-uniform) distribution
    bound = np.sqrt(6.0 / model.sizes[0])
    for j in ids:
        assert all(abs(v) <= bound + 1e-6 for v, _ in connections(snaps[T][h], "in", j).values())
        assert abs(snaps[T][h]["bias"][j]) < 1e-6
    others = np.setdiff1d(np.arange(model.sizes[1]), ids)
    for j in others[:5]:
        assert connections(snaps[T][h], "in", j).keys() == connections(before[h], "in", j).keys()


def activations(model, X):
    """Hidden activations (ReLU) of X with the dense reference."""
    out, a = [], X.astype(np.float64)
    for w, b in dense_layers(model)[:-1]:
        a = np.maximum(a @ w + b, 0.0)
        out.append(a)
    return out


def test_redo_selects_exactly_the_neurons_at_or_below_tau():
    X, y = blobs(n=64, f=8, c=3, seed=3)
    X = np.abs(X)  # positive inputs, so all-negative weights silence a neuron
    model = sm.SparseMLP([8, 12, 3], activation="relu", density=0.6, dropout=0.0, seed=3)
    st = model._net.layer_state(0)
    values = st["values"].copy()
    cols = np.repeat(np.arange(12), np.diff(st["col_ptr"]))
    values[cols == 1] = -np.abs(values[cols == 1]) - 0.1  # dead
    values[cols == 4] = np.sign(values[cols == 4]) * 1e-4  # nearly dormant
    model._net.set_layer_values(0, values)
    tau = 0.1
    acts = activations(model, X)[0]
    mean_abs = np.abs(acts).mean(axis=0)
    score = mean_abs / mean_abs.mean()
    expected = np.flatnonzero(score <= tau)
    assert 1 in expected and 4 in expected and expected.size < 12
    run = sm.ReDo(tau=tau, probe=0).start(model, X, y)
    model._net.train_epoch(X, y, len(y), 1e-30, 0.0, 0.0, shuffle=False)  # one batch, old weights
    np.testing.assert_allclose(model._net.activity(0)[0], mean_abs, rtol=1e-5)
    before = states(model)
    record = run.event(1, 1)
    np.testing.assert_array_equal(changed_neurons(before, states(model), 0), expected)
    check_recycled(before, states(model), 0, expected, outgoing="zero")
    assert record["recycled"] == [expected.size]
    assert model._net.activity(0)[2] == 0  # statistics restart after an event
    run.close(model)
    with pytest.raises(sm.InvalidInputError, match="tracking is off"):
        model._net.activity(0)


def test_continual_backprop_utility_maturity_and_rate():
    X, y = blobs(n=64, f=8, c=3, seed=4)
    model = sm.SparseMLP([8, 20, 3], activation="relu", epsilon=4, dropout=0.0, seed=4)
    decay = 0.9
    s = sm.ContinualBackprop(replacement_rate=0.05, maturity=3, decay=decay, every_steps=2)
    run = s.start(model, X, y)
    net = model._net
    order = net.epoch_order(len(y), False)
    u = np.zeros(20)
    for t in range(2):
        part = order[t * 32:(t + 1) * 32]
        acts = activations(model, X[part])[0]
        w_out = dense_layers(model)[1][0]
        u = decay * u + (1 - decay) * np.abs(acts).mean(axis=0) * np.abs(w_out).sum(axis=1)
        net.train_epoch(X, y, 32, 0.05, 0.9, 0.0, order=part)
    np.testing.assert_allclose(net.activity(0)[1], u, rtol=1e-5, atol=1e-12)
    # age 2 <= maturity 3: nobody is eligible yet
    assert run.event(2, 1) is None
    net.train_epoch(X, y, 32, 0.05, 0.9, 0.0, order=order[:64])
    # now age 4 > 3 for all 20: owed 0.05 * 20 * 2 = 2 replacements
    before = states(model)
    _, utility, _ = net.activity(0)
    corrected = utility / (1 - decay ** 4)
    record = run.event(4, 1)
    expected = np.sort(np.argsort(corrected, kind="stable")[:2])
    assert record["recycled"] == [2]
    np.testing.assert_array_equal(changed_neurons(before, states(model), 0), expected)
    check_recycled(before, states(model), 0, expected, outgoing="zero")
    assert (run.age[0][expected] == 0).all()
    np.testing.assert_array_equal(net.activity(0)[1][expected], 0.0)


def fit_weights(threads=None, **kw):
    if threads is not None:
        sm.set_num_threads(threads)
    X, y = blobs(n=200, f=12, c=3, seed=5)
    model = sm.SparseMLP([12, 32, 24, 3], epsilon=4, seed=11)
    history = model.fit(X, y, epochs=4, batch_size=16, verbose=0, **kw)
    return [s["values"] for s in states(model)], model, history


def test_recycling_that_never_fires_changes_nothing():
    plain, _, _ = fit_weights()
    later, _, hist = fit_weights(recycling=sm.NeuronRecycling(start_step=10**9, probe=0))
    for a, b in zip(plain, later):
        np.testing.assert_array_equal(a, b)
    assert all(r["recycled"] == [0, 0] for r in hist)
    zero_midpoint, _, _ = fit_weights(recycling=sm.MidpointLoss(weight=0.0))
    for a, b in zip(plain, zero_midpoint):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("strategy", [
    sm.NeuronRecycling(fraction=0.1, every_steps=7, immunity=1, interpolate_steps=3),
    sm.ReDo(tau=0.3, every_steps=7),
    sm.ContinualBackprop(replacement_rate=0.01, maturity=5, every_steps=3),
    [sm.NeuronRecycling(select="random", fraction=0.1, every_steps=7), sm.MidpointLoss(0.5)],
], ids=["magnitude", "redo", "cbp", "random+midpoint"])
def test_recycling_runs_are_the_same_on_1_and_2_threads_and_keep_nnz(strategy, threads):
    one, model, hist = fit_weights(1, recycling=strategy)
    two, _, _ = fit_weights(2, recycling=strategy)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert len({r["n_connections"] for r in hist}) == 1
    summary = model.recycling_summary
    assert summary is hist[-1]["recycling_summary"]
    per_layer = [sum(r["recycled"][h] for r in hist) for h in range(2)]
    assert per_layer == [layer["recycled"] for layer in summary["layers"]]
    assert sum(per_layer) > 0
    for layer in summary["layers"]:
        hist_counts = layer["recycle_count_histogram"]
        assert sum(hist_counts) == layer["neurons"]
        assert sum(k * c for k, c in enumerate(hist_counts)) == layer["recycled"]
        assert sum(layer["magnitude_histogram"]["counts"]) == layer["neurons"]


def test_midpoint_loss_pulls_magnitudes_together():
    _, plain, _ = fit_weights()
    _, pulled, _ = fit_weights(recycling=sm.MidpointLoss(weight=20.0))
    loss = [m._net.midpoint_loss(1.0, "mean", "l2") for m in (plain, pulled)]
    assert loss[1] < 0.5 * loss[0]


def test_events_record_the_loss_before_and_after():
    _, model, hist = fit_weights(recycling=sm.NeuronRecycling(fraction=0.2, every_steps=10, probe=64))
    events = [e for r in hist for e in r["recycle_events"]]
    assert [e["step"] for e in events] == list(range(10, 52, 10))
    X, y = blobs(n=200, f=12, c=3, seed=5)
    for e in events:
        assert np.isfinite(e["loss_before"]) and np.isfinite(e["loss_after"])
        assert e["loss_before"] != e["loss_after"]


def test_recycling_with_shrinking_importance_pruning_restarts_the_books(caplog):
    X, y = blobs(n=200, f=12, c=3, seed=6)
    model = sm.SparseMLP([12, 40, 3], epsilon=4, seed=1)
    with caplog.at_level(logging.WARNING, logger="sparse_mlp"):
        model.fit(X, y, epochs=4, batch_size=16, verbose=0,
                  pruning=sm.ImportancePruning(start_epoch=2, every=1, percentile=20, shrink=True),
                  recycling=sm.NeuronRecycling(fraction=0.1, every_steps=13))
    assert model.sizes[1] < 40
    assert caplog.text.count("changed the width") == 1  # once a run, not at every shrink
    assert model.recycling_summary["layers"][0]["neurons"] == model.sizes[1]


def test_compare_and_table():
    X, y = blobs(n=120, f=10, c=3, seed=7)
    rows = sm.recycling.compare(
        lambda seed: sm.SparseMLP([10, 24, 3], epsilon=4, seed=seed), X, y,
        {"none": None, "magnitude": sm.NeuronRecycling(fraction=0.1, every_steps=5)},
        seeds=[0, 1], validation_data=(X, y), epochs=2, batch_size=16, verbose=0)
    assert [r["name"] for r in rows] == ["none", "magnitude"]
    assert "recycled" not in rows[0] and rows[1]["recycled"] > 0
    assert len(rows[1]["best_per_seed"]) == 2
    table = sm.recycling.format_table(rows)
    assert "magnitude" in table and "none" in table


def test_plot_summary(tmp_path):
    _, model, _ = fit_weights(recycling=sm.NeuronRecycling(fraction=0.1, every_steps=7))
    path = tmp_path / "recycling.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(sm.InvalidInputError, match="matplotlib"):
            sm.recycling.plot_summary(model.recycling_summary, str(path))
        return
    sm.recycling.plot_summary(model.recycling_summary, str(path))
    assert path.stat().st_size > 0


@pytest.mark.parametrize("make, message", [
    (lambda: sm.NeuronRecycling(select="smallest"), "select"),
    (lambda: sm.NeuronRecycling(fraction=0), "fraction"),
    (lambda: sm.NeuronRecycling(every_steps=0), "every_steps"),
    (lambda: sm.NeuronRecycling(reinit="he"), "reinit"),
    (lambda: sm.NeuronRecycling(outgoing="drop"), "outgoing"),
    (lambda: sm.NeuronRecycling(immunity=-1), "immunity"),
    (lambda: sm.NeuronRecycling(reinit="copy", interpolate_steps=3), "copy"),
    (lambda: sm.NeuronRecycling(layers=[0, 0]), "twice"),
    (lambda: sm.ReDo(tau=-1), "tau"),
    (lambda: sm.ContinualBackprop(decay=1.0), "decay"),
    (lambda: sm.ContinualBackprop(replacement_rate=2), "replacement_rate"),
    (lambda: sm.MidpointLoss(midpoint="mode"), "midpoint"),
    (lambda: sm.MidpointLoss(distance="l3"), "distance"),
    (lambda: sm.MidpointLoss(weight=float("nan")), "weight"),
])
def test_bad_strategy_arguments(make, message):
    with pytest.raises(sm.InvalidInputError, match=message):
        make()


def test_bad_recycling_in_fit_and_low_level_calls():
    X, y = blobs(n=40, f=10, c=3)
    model = sm.SparseMLP([10, 16, 3], epsilon=4, seed=0)
    with pytest.raises(sm.InvalidInputError, match="recycling must be"):
        model.fit(X, y, epochs=1, verbose=0, recycling="magnitude")
    with pytest.raises(sm.InvalidInputError, match="at most one recycling"):
        model.fit(X, y, epochs=1, verbose=0, recycling=[sm.ReDo(), sm.NeuronRecycling()])
    with pytest.raises(sm.InvalidInputError, match="layers"):
        model.fit(X, y, epochs=1, verbose=0, recycling=sm.NeuronRecycling(layers=[3]))
    flat = sm.SparseMLP([10, 3], epsilon=4, seed=0)
    with pytest.raises(sm.InvalidInputError, match="hidden layer"):
        flat.fit(X, y, epochs=1, verbose=0, recycling=sm.ReDo())
    net = model._net
    before = states(model)
    for bad in ([16], [1, 1], [-1]):
        with pytest.raises(sm.InvalidInputError):
            net.recycle_neurons(0, np.array(bad, dtype=np.int64))
    with pytest.raises(sm.InvalidInputError, match="reinit"):
        net.recycle_neurons(0, np.array([1], dtype=np.int64), "he")
    with pytest.raises(sm.InvalidInputError, match="hidden layer 1"):
        net.recycle_neurons(1, np.array([1], dtype=np.int64))
    with pytest.raises(sm.InvalidInputError, match="copy"):
        net.recycle_neurons(0, np.arange(16, dtype=np.int64), "copy")
    with pytest.raises(sm.InvalidInputError, match="rule"):
        net.select_neurons(np.zeros(16), np.ones(16, dtype=bool), "median", 1.0)
    with pytest.raises(sm.InvalidInputError, match="whole number"):
        net.select_neurons(np.zeros(16), np.ones(16, dtype=bool), "smallest", 1.5)
    with pytest.raises(sm.InvalidInputError, match="NaN"):
        net.select_neurons(np.full(16, np.nan), np.ones(16, dtype=bool), "smallest", 1.0)
    with pytest.raises(sm.InvalidInputError, match="order"):
        net.train_epoch(X, y, 8, 0.01, 0.9, 0.0, order=np.array([0, 40], dtype=np.int64))
    for a, b in zip(before, states(model)):
        for key in ("values", "momentum", "bias", "row_idx"):
            np.testing.assert_array_equal(a[key], b[key])


def test_recycling_history_survives_save_and_load(tmp_path):
    _, model, hist = fit_weights(recycling=sm.NeuronRecycling(fraction=0.1, every_steps=7))
    model.save(tmp_path / "m.npz")
    loaded = sm.SparseMLP.load(tmp_path / "m.npz")
    assert loaded.history[-1]["recycling_summary"] == hist[-1]["recycling_summary"]
    assert loaded.history[-1]["recycle_events"] == hist[-1]["recycle_events"]
