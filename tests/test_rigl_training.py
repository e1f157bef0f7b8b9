"""RigL as a topology strategy of fit(): the update grows what a dense numpy
RigL grows, training keeps every layer's connection count with no duplicate,
1 and 2 threads agree bit for bit, a checkpoint taken inside an update
window resumes bit-identically, and bad settings are named."""

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs, dense_layers


def positions(model, layer):
    """The layer's linear positions j·n_in + i, in storage order."""
    w = model.layers[layer].to_scipy().tocsc()
    cols = np.repeat(np.arange(w.shape[1]), np.diff(w.indptr))
    return cols.astype(np.uint64) * w.shape[0] + w.indices.astype(np.uint64)


def dense_gradients(model, X, y):
    """The loss's gradient for every position of every weight matrix, present
    or not (numpy, float64): tanh hidden layers, softmax cross-entropy."""
    layers = dense_layers(model)
    acts, zs = [X.astype(np.float64)], []
    for k, (w, b) in enumerate(layers):
        z = acts[-1] @ w + b
        zs.append(z)
        acts.append(np.tanh(z) if k < len(layers) - 1 else z)
    logits = acts[-1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(p.shape[1])[y]) / len(y)
    grads = [None] * len(layers)
    for k in reversed(range(len(layers))):
        grads[k] = acts[k].T @ delta
        if k > 0:
            delta = (delta @ layers[k][0].T) * (1 - np.tanh(zs[k - 1]) ** 2)
    return grads


def reference_growth(model, grads, layer, zeta):
    """The missing positions a dense RigL grows in ``layer``: SET's count
    (round(ζ·P) + round(ζ·N)) of the largest |gradient|."""
    w = dense_layers(model)[layer][0]
    values = model.layers[layer].to_scipy().tocsc().data
    k = round(zeta * np.sum(values >= 0)) + round(zeta * np.sum(values < 0))
    rows, cols = np.nonzero(w == 0)
    g = np.abs(grads[layer][rows, cols])
    order = np.argsort(-g, kind="stable")
    assert g[order[k - 1]] > g[order[k]] * (1 + 1e-5), "the reference's k-th gradient is unique"
    return np.sort(cols[order[:k]].astype(np.uint64) * w.shape[0] + rows[order[:k]])


@pytest.mark.parametrize("candidates", [None, 1e9])
def test_the_update_grows_what_a_dense_numpy_rigl_grows(candidates):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 16)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model = sm.SparseMLP([16, 30, 10], activation="tanh", epsilon=2, dropout=0.0, seed=4)
    # a window of two batches: the mean of their mean-loss gradients
    first, second = dense_gradients(model, X[:40], y[:40]), dense_gradients(model, X[40:], y[40:])
    want = [reference_growth(model, [(g + h) / 2 for g, h in zip(first, second)], k, 0.3) for k in (0, 1)]
    before = [positions(model, k) for k in (0, 1)]
    net = model._net
    net.rigl_open([0, 1], 0.3, 100, candidates)  # exact search, or every missing position
    net.gradients(X[:40], y[:40])
    net.gradients(X[40:], y[40:])
    assert net.rigl_window()[1] == 2
    done = net.rigl_update(0.3)
    assert net.rigl_window() is None
    for (layer, removed_pos, removed_neg, grown, offered), expected, old in zip(done, want, before):
        np.testing.assert_array_equal(grown, expected)
        now = positions(model, layer)
        assert len(now) == len(old) == len(np.unique(now))
        assert removed_pos + removed_neg == len(grown)
        assert offered == model.sizes[layer] * model.sizes[layer + 1] - len(old)
        np.testing.assert_array_equal(np.isin(grown, now), True)
        # grown at zero
        w = model.layers[layer].to_scipy().tocsc()
        n_in = w.shape[0]
        assert all(w[int(p % n_in), int(p // n_in)] == 0 for p in grown)


def _build(precision="float32"):
    return sm.SparseMLP([10, 40, 30, 3], epsilon=4, dropout=0.3, seed=11, precision=precision)


OPTIONS = dict(epochs=5, batch_size=16, learning_rate=0.05, verbose=0)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("rigl", [
    sm.RigL(0.3, every_steps=7),
    sm.RigL(0.2, every_steps=10, accumulate=3, mode="exact", init="gradient", stop_step=50),
    sm.RigL(0.3, every_steps=5, candidates=1.0, accumulate=5, layers=[1]),
], ids=["candidates", "exact", "one-layer"])
def test_training_keeps_connection_counts_and_1_and_2_threads_agree(rigl, precision):
    X, y = blobs(200, 10, 3, seed=1)
    runs = []
    for threads in (1, 2):
        previous = sm.get_num_threads()
        sm.set_num_threads(threads)
        try:
            model = _build(precision)
            nnz = [m.nnz for m in model.layers]
            history = model.fit(X, y, topology=rigl, **OPTIONS)
        finally:
            sm.set_num_threads(previous)
        runs.append(model)
        for record in history:
            assert record["layer_connections"] == nnz
        for k in range(3):
            p = positions(model, k)
            assert len(p) == len(np.unique(p)) == nnz[k]
        steps = 13 * 5  # 200 samples in batches of 16, 5 epochs
        updates = [t for t in range(rigl.every_steps, steps + 1, rigl.every_steps)
                   if rigl.stop_step is None or t < rigl.stop_step]
        assert sum(r["rigl_updates"] for r in history) == len(updates)
        assert sum(r["rigl_regrown"] for r in history) > 0
        assert model._net.rigl_window() is None, "the window closes with fit"
    assert_same_training_state(*runs)


def test_rigl_changes_the_topology_where_gradients_are_large_and_set_does_not():
    X, y = blobs(200, 10, 3, seed=5)
    grown = {}
    for name, topology in [("rigl", sm.RigL(0.3, every_steps=13)), ("set", sm.SET(0.3))]:
        model = _build()
        start = [set(positions(model, k).tolist()) for k in range(3)]
        model.fit(X, y, topology=topology, **{**OPTIONS, "epochs": 1})
        grown[name] = [len(set(positions(model, k).tolist()) - start[k]) for k in range(3)]
    # one update at the epoch's end (step 13) for RigL; SET skips the last epoch
    assert grown["set"] == [0, 0, 0] and sum(grown["rigl"]) > 0


class _Stop(Exception):
    pass


@pytest.mark.parametrize("mode", ["candidates", "exact"])
@pytest.mark.parametrize("stop_after", [1, 3])
def test_resume_inside_an_update_window_is_bit_identical(tmp_path, mode, stop_after):
    X, y = blobs(200, 10, 3, seed=2)
    # windows [16, 20), [36, 40), ...: epoch 3 ends at step 39, inside one
    rigl = sm.RigL(0.3, every_steps=20, accumulate=4, mode=mode, init="gradient")
    options = {**OPTIONS, "topology": rigl}
    whole = _build()
    expected = whole.fit(X, y, **options)

    def stop(model, record):
        if record["epoch"] == stop_after:  # (after the epoch's checkpoint)
            raise _Stop

    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[stop], **options)
    saved = np.load(path)
    if stop_after == 3:
        name = "sums" if mode == "candidates" else "a"
        assert saved[f"recycling.0.window.0.{name}"].size > 0, "no window in the checkpoint"
    resumed = _build()
    history = resumed.fit(X, y, checkpoint=path, resume=True, **options)
    assert_same_training_state(whole, resumed)
    for key in ("loss", "accuracy", "rigl_regrown", "rigl_updates", "layer_connections"):
        assert [r[key] for r in history] == [r[key] for r in expected], key


def test_the_schedule_decays_zeta_by_a_cosine_and_stops():
    rigl = sm.RigL(0.4, every_steps=10, stop_step=40)
    assert rigl.zeta_at(0) == pytest.approx(0.4)
    assert rigl.zeta_at(20) == pytest.approx(0.2)
    assert rigl.zeta_at(40) == 0.0
    assert [rigl.update_after(t) for t in (0, 9, 10, 29, 30)] == [10, 10, 20, 30, None]
    constant = sm.RigL(0.4, every_steps=10)
    assert constant.zeta_at(10**6) == 0.4 and constant.update_after(95) == 100


@pytest.mark.parametrize("kwargs, message", [
    ({"zeta": 1.5}, "RigL zeta"),
    ({"every_steps": 0}, "RigL every_steps"),
    ({"stop_step": -3}, "RigL stop_step"),
    ({"candidates": 0.5}, "RigL candidates"),
    ({"accumulate": 200}, "at most every_steps"),
    ({"mode": "dense"}, "RigL mode"),
    ({"init": "random"}, "RigL init"),
    ({"layers": [0, 0]}, "twice"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(sm.InvalidInputError, match=message):
        sm.RigL(**kwargs)


def test_a_layer_that_does_not_exist_is_named_before_training():
    X, y = blobs(50, 10, 3)
    model = _build()
    with pytest.raises(sm.InvalidInputError, match=r"RigL layers \[5\] do not exist"):
        model.fit(X, y, topology=sm.RigL(layers=[5]), **OPTIONS)
    assert model.epochs_trained == 0


def test_a_command_line_session_with_rigl_is_killed_and_resumes_bit_identically(tmp_path, madelon_dir):
    """Train on Madelon with ``--topology rigl`` through the command line,
    kill the process after two epochs, resume: the same model as a run
    never stopped. Every epoch ends inside an update window (63 steps an
    epoch; windows [55, 65), [120, 130), [185, 195), [250, 260))."""
    from test_cli import _kill_after_epochs, run

    args = ["train", "--epochs", "4", "--data", "madelon", "--data-dir", madelon_dir,
            "--hidden", "1000,1000,1000", "--topology", "rigl", "--rigl-every", "65",
            "--rigl-accumulate", "10", "--rigl-init", "gradient", "--quiet"]
    whole = run(*args, "--save", tmp_path / "whole.npz", "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    records = sm.read_metrics(tmp_path / "whole")
    assert [r["rigl_updates"] for r in records] == [0, 1, 1, 1]
    assert all(r["n_connections"] == records[0]["n_connections"] for r in records)
    ck = tmp_path / "ck.npz"
    assert _kill_after_epochs(args + ["--checkpoint", ck], ck, 2), "the run ended before the kill"
    r = run(*args, "--checkpoint", ck, "--resume", "--save", tmp_path / "resumed.npz")
    assert r.returncode == 0, r.stderr
    a, b = sm.SparseMLP.load(tmp_path / "whole.npz"), sm.SparseMLP.load(tmp_path / "resumed.npz")
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.to_scipy().toarray(), lb.to_scipy().toarray())
    assert [h["rigl_regrown"] for h in a.history] == [h["rigl_regrown"] for h in b.history]
    bad = run(*args, "--rigl-candidates", "0.5")
    assert bad.returncode == 2 and "RigL candidates" in bad.stderr and "Traceback" not in bad.stderr


def test_the_estimators_take_rigl_by_name_or_as_an_object():
    from sklearn.base import clone

    X, y = blobs(320, 10, 3, seed=4)
    for topology, updates in (("rigl", 0), (sm.RigL(0.3, every_steps=10, mode="exact"), 3)):
        # 320 samples in batches of 32: 10 steps an epoch; "rigl" updates every 100 steps
        est = sm.SparseMLPClassifier(hidden_layer_sizes=(100,), epsilon=2, max_iter=3, batch_size=32,
                                     topology=topology, random_state=0, n_iter_no_change=50)
        est.fit(X, y)
        assert clone(est).get_params()["topology"] == topology
        assert sum(r["rigl_updates"] for r in est.history_) == updates
    with pytest.raises(ValueError, match="topology must be"):
        sm.SparseMLPClassifier(topology="random").fit(X, y)


# ---- WASAP: the server opens windows, the workers send their candidates' sums


def test_wassp_with_rigl_is_deterministic_and_the_workers_sums_reach_the_server(tmp_path):
    from test_wasap import run_job, target_nnz

    runs = []
    for name in ("a", "b"):
        saving = ["--checkpoint", str(tmp_path / "ck.npz")] if name == "a" else []
        rc, res, output, _ = run_job(tmp_path, "--sync", "--epochs", "6", "--rigl", "20", *saving,
                                     name=name)
        assert rc == 0, output
        assert len({r["sha"] for r in res.values()}) == 1, "all ranks hold the same final model"
        runs.append(res[0])
    assert runs[0]["sha"] == runs[1]["sha"], "WASSP with RigL is deterministic"
    saved = np.load(tmp_path / "ck.npz")
    assert [k for k in saved.files if k.startswith("recycling.0.keep.")], "the server saves RigL's books"
    h = runs[0]["history"]
    phase1 = [rec for rec in h if rec["phase"] == 1]
    # 4 server epochs of 38 updates (1200 samples, 2 workers x 16): updates at 20, 40, ..., 140
    assert sum(rec["rigl_updates"] for rec in phase1) == 7
    assert all(rec["n_connections"] == sum(target_nnz()) for rec in phase1)
    assert sum(rec["rigl_regrown"] for rec in phase1) > 0
    # every window gathers 3 updates' gradients from each of the 2 workers
    assert sum(rec["rigl_batches"] for rec in phase1) == 7 * 3 * 2
    assert sum(rec["rigl_sums_dropped"] for rec in phase1) == 0
    assert runs[0]["nnz"] == target_nnz() and runs[0]["accuracy"] > 0.85


def test_wasap_with_rigl_trains_and_exact_mode_is_refused_on_every_rank(tmp_path):
    from test_wasap import run_job, target_nnz

    rc, res, output, _ = run_job(tmp_path, "--epochs", "6", "--rigl", "25")
    assert rc == 0, output
    assert len({r["sha"] for r in res.values()}) == 1
    phase1 = [rec for rec in res[0]["history"] if rec["phase"] == 1]
    assert sum(rec["rigl_updates"] for rec in phase1) == (4 * 75) // 25
    # asynchronous: a gradient computed in a window may reach the server after
    # its update, and its sums are dropped
    assert sum(rec["rigl_batches"] for rec in phase1) > 0
    assert res[0]["nnz"] == target_nnz() and res[0]["accuracy"] > 0.85
    # Importance Pruning (shrinking layers) at the end of epochs 2 and 4, inside
    # the windows [73, 76) and [149, 152): sums from the other topology are dropped
    rc, res, output, _ = run_job(tmp_path, "--epochs", "6", "--rigl", "76", "--pruning", name="pruned")
    assert rc == 0, output
    phase1 = [rec for rec in res[0]["history"] if rec["phase"] == 1]
    assert sum(rec["rigl_updates"] for rec in phase1) == 3 and res[0]["sizes"][1] < 48
    assert len({r["sha"] for r in res.values()}) == 1
    rc, res, output, _ = run_job(tmp_path, "--rigl", "25", "--rigl-mode", "exact", name="exact")
    assert rc != 0
    for r in range(3):
        assert "RigL in candidate mode only" in res[r]["error"]


def test_the_window_bindings_refuse_bad_input_and_change_nothing():
    net = _build()._net
    for call in (net.rigl_take_sums, lambda: net.rigl_add_sums(np.zeros(3, np.float32), 1),
                 lambda: net.rigl_update(0.3)):
        with pytest.raises(sm.InvalidInputError, match="no RigL window is open"):
            call()
    with pytest.raises(sm.InvalidInputError, match="out of range"):
        net.rigl_open([7], 0.3, 10, 4.0)
    with pytest.raises(sm.InvalidInputError, match="zeta"):
        net.rigl_open([0], 1.5, 10, 4.0)
    assert net.rigl_window() is None
    net.rigl_open([0, 1], 0.3, 10, 4.0)
    saved = net.rigl_window()
    n = sum(p["sums"].size for p in saved[2])
    with pytest.raises(sm.InvalidInputError, match=f"{n - 1} sums given for a window of {n}"):
        net.rigl_add_sums(np.zeros(n - 1, np.float32), 1)
    step, batches, parts, seed = saved
    wrong = [dict(parts[0], shape=(11, 40)), parts[1]]
    with pytest.raises(sm.InvalidInputError, match="does not fit the layer"):
        net.set_rigl_window((step, batches, wrong, seed))
    with pytest.raises(sm.InvalidInputError, match="the RigL window lacks 'a'"):
        net.set_rigl_window((step, batches, [{"shape": (10, 40)}], seed))
    assert net.rigl_window()[0] == step and net.rigl_window()[2][0]["sums"].size == parts[0]["sums"].size
    net.rigl_open([0], 0.3, 10)  # exact: it gathers batches, not sums
    with pytest.raises(sm.InvalidInputError, match="exact search gathers batches"):
        net.rigl_add_sums(np.zeros(0, np.float32), 1)
    with pytest.raises(sm.InvalidInputError, match="2 positions but 1 gradients"):
        net.rigl_prune_grow(0, 0.3, np.zeros(2, np.uint64), np.zeros(1, np.float32))
