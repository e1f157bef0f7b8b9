"""Checkpoints of fit(): a resumed run is bit-identical to one never stopped."""

import json
import os
import zipfile

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs

OPTIONS = dict(epochs=6, batch_size=16, learning_rate=0.05, nesterov=True,
               topology=sm.SET(0.3), pruning=sm.ImportancePruning(2, 2, 20.0, shrink=False), verbose=0)


def _build():
    return sm.SparseMLP([10, 40, 30, 3], epsilon=4, dropout=0.3, seed=11)


class _Stop(Exception):
    pass


def _interrupt_after(epoch):
    def callback(model, record):
        if record["epoch"] == epoch:
            raise _Stop
    return callback




@pytest.mark.parametrize("stop_after", [1, 2, 3, 5])
def test_resume_after_a_kill_is_bit_identical(tmp_path, stop_after):
    X, y = blobs(200, 10, 3, seed=1)
    val = (X[:40], y[:40])
    whole = _build()
    expected = whole.fit(X, y, validation_data=val, **OPTIONS)

    path = tmp_path / "run.npz"
    first = _build()
    with pytest.raises(_Stop):
        first.fit(X, y, validation_data=val, checkpoint=path,
                  callbacks=[_interrupt_after(stop_after + 1)], **OPTIONS)
    # A new process: a fresh model object, the same call with resume=True.
    resumed = _build()
    history = resumed.fit(X, y, validation_data=val, checkpoint=path, resume=True, **OPTIONS)
    assert_same_training_state(whole, resumed)
    assert resumed.epochs_trained == 6 and resumed.sizes == whole.sizes
    assert [r["epoch"] for r in history] == list(range(1, 7))
    for key in ("loss", "accuracy", "val_loss", "n_connections", "n_neurons"):
        assert [r[key] for r in history] == [r[key] for r in expected], key


def test_checkpoint_every_and_the_final_checkpoint(tmp_path):
    X, y = blobs(100, 10, 3)
    path = tmp_path / "run.npz"
    seen = []

    def watch(model, record):
        seen.append(sm.SparseMLP.load(path)._config["fit"]["done"] if path.exists() else None)

    _build().fit(X, y, checkpoint=path, checkpoint_every=2, callbacks=[watch], **OPTIONS)
    # The checkpoint is written before the callbacks run: they see the epoch's own.
    assert seen == [None, 2, 2, 4, 4, 6]
    state = sm.SparseMLP.load(path)._config["fit"]
    assert state["done"] == 6 and state["finished"] and state["plan"]["epochs"] == 6


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    X, y = blobs(100, 10, 3)
    path = tmp_path / "run.npz"
    a = _build()
    a.fit(X, y, checkpoint=path, **OPTIONS)
    b = _build()
    history = b.fit(X, y, checkpoint=path, resume=True, **OPTIONS)
    assert_same_training_state(a, b)
    assert len(history) == 6


def test_resume_without_a_file_starts_a_new_run(tmp_path):
    X, y = blobs(100, 10, 3)
    a, b = _build(), _build()
    a.fit(X, y, **OPTIONS)
    b.fit(X, y, checkpoint=tmp_path / "new.npz", resume=True, **OPTIONS)
    assert_same_training_state(a, b)


def test_a_callback_stop_is_final(tmp_path):
    X, y = blobs(100, 10, 3)
    path = tmp_path / "run.npz"
    _build().fit(X, y, checkpoint=path, callbacks=[lambda m, r: r["epoch"] == 2], **OPTIONS)
    model = _build()
    assert len(model.fit(X, y, checkpoint=path, resume=True, **OPTIONS)) == 2
    assert model.epochs_trained == 2


@pytest.mark.parametrize("change, message", [
    (dict(epochs=7), "epochs: saved 6, given 7"),
    (dict(learning_rate=0.1), "learning_rate"),
    (dict(topology=sm.SET(0.2)), "topology"),
    (dict(pruning=None), "pruning"),
    (dict(shuffle=False), "shuffle"),
])
def test_resume_with_other_options_is_refused(tmp_path, change, message):
    X, y = blobs(100, 10, 3)
    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(2)], **OPTIONS)
    before = path.read_bytes()
    model = _build()
    with pytest.raises(sm.InvalidInputError, match=message):
        model.fit(X, y, checkpoint=path, resume=True, **{**OPTIONS, **change})
    assert model.epochs_trained == 0 and path.read_bytes() == before


def test_resume_on_other_data_is_refused(tmp_path):
    X, y = blobs(100, 10, 3)
    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(2)], **OPTIONS)
    X2 = X.copy()
    X2[5, 3] += 1
    with pytest.raises(sm.InvalidInputError, match="other training data"):
        _build().fit(X2, y, checkpoint=path, resume=True, **OPTIONS)


def test_checkpoint_argument_errors(tmp_path):
    X, y = blobs(60, 10, 3)
    model = _build()
    with pytest.raises(sm.InvalidInputError, match="resume=True needs"):
        model.fit(X, y, resume=True, **OPTIONS)
    with pytest.raises(sm.InvalidInputError, match="checkpoint_every"):
        model.fit(X, y, checkpoint=tmp_path / "a.npz", checkpoint_every=0, **OPTIONS)

    class Custom:
        def on_epoch_end(self, model, epoch, epochs):
            return {}

    with pytest.raises(sm.InvalidInputError, match="is not a registered strategy"):
        model.fit(X, y, checkpoint=tmp_path / "a.npz", **{**OPTIONS, "topology": Custom()})
    plain = tmp_path / "plain.npz"
    model.save(plain)
    with pytest.raises(sm.CheckpointError, match="not a checkpoint of a training run"):
        _build().fit(X, y, checkpoint=plain, resume=True, **OPTIONS)
    assert model.epochs_trained == 0 and not (tmp_path / "a.npz").exists()


def test_divergence_leaves_the_last_good_checkpoint(tmp_path):
    X, y = blobs(200, 10, 3, seed=0)
    path = tmp_path / "run.npz"
    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=0, activation="relu")
    with pytest.raises(sm.DivergenceError, match="epoch 5, batch 9"):
        model.fit(X * 10, y, epochs=8, batch_size=16, learning_rate=0.5, momentum=0.95,
                  verbose=0, checkpoint=path)
    saved = sm.SparseMLP.load(path)
    assert saved._config["fit"]["done"] == 4 and saved.epochs_trained == 4
    assert all(np.isfinite(layer.to_scipy().data).all() for layer in saved.layers)


def test_a_tampered_checkpoint_is_refused(tmp_path):
    X, y = blobs(60, 10, 3)
    path = tmp_path / "run.npz"
    _build().fit(X, y, checkpoint=path, **OPTIONS)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(np.load(path)["meta"].tobytes())
    meta["version"] = 99
    bad = tmp_path / "future.npz"
    arrays = dict(np.load(path))
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(bad, **arrays)
    with pytest.raises(sm.CheckpointError, match="format version 99"):
        _build().fit(X, y, checkpoint=bad, resume=True, **OPTIONS)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(sm.CheckpointError):
        _build().fit(X, y, checkpoint=cut, resume=True, **OPTIONS)
    assert members  # the original archive was readable


def test_a_loaded_checkpoint_trained_on_is_a_new_run(tmp_path):
    X, y = blobs(60, 10, 3)
    path = tmp_path / "run.npz"
    _build().fit(X, y, checkpoint=path, **OPTIONS)
    model = sm.SparseMLP.load(path)
    assert model._config["fit"]["finished"]
    model.fit(X, y, epochs=1, verbose=0)
    model.save(tmp_path / "later.npz")
    assert "fit" not in sm.SparseMLP.load(tmp_path / "later.npz")._config


RECYCLING = {
    # immunity, an interpolation longer than an epoch (13 steps), the midpoint
    # loss and SET: every book and the pending blends cross the checkpoint
    "magnitude": [sm.NeuronRecycling(fraction=0.1, every_steps=7, immunity=2,
                                     interpolate_steps=20), sm.MidpointLoss(weight=0.01)],
    "redo": sm.ReDo(tau=0.5, every_steps=9, interpolate_steps=5),
    # ages and fractional replacement debts, with layers shrunk by pruning
    "cbp": sm.ContinualBackprop(replacement_rate=0.01, maturity=5, every_steps=3),
}


def _recycling_options(name):
    pruning = sm.ImportancePruning(2, 2, 20.0, shrink=True) if name == "cbp" else None
    return {**OPTIONS, "recycling": RECYCLING[name], "pruning": pruning}


@pytest.mark.parametrize("stop_after", [1, 4])
@pytest.mark.parametrize("name", sorted(RECYCLING))
def test_resume_with_recycling_is_bit_identical(tmp_path, name, stop_after):
    X, y = blobs(200, 10, 3, seed=2)
    options = _recycling_options(name)
    whole = _build()
    expected = whole.fit(X, y, **options)

    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(stop_after + 1)],
                     **options)
    saved = np.load(path)
    assert saved["recycling.0.counts.0"].sum() > 0, "nothing recycled before the checkpoint"
    if name == "magnitude":
        assert saved["recycling.core.blend_steps"].size > 0, "no interpolation in flight"
    resumed = _build()
    history = resumed.fit(X, y, checkpoint=path, resume=True, **options)
    assert_same_training_state(whole, resumed)
    for key in ("loss", "accuracy", "recycled", "recycle_events", "n_neurons"):
        assert [r[key] for r in history] == [r[key] for r in expected], key
    assert resumed.recycling_summary == whole.recycling_summary
    a, b = whole._net.recycling_state(), resumed._net.recycling_state()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _rewrite_books(path, out, change):
    """Copies checkpoint ``path`` to ``out`` with ``change`` applied to its
    first recycling run's JSON books (and the run's history at hand)."""
    arrays = dict(np.load(path))
    meta = json.loads(arrays["meta"].tobytes())
    change(meta["config"]["fit"]["recycling"][0], meta["history"])
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(out, **arrays)


def test_books_stay_the_same_size_and_old_event_lists_still_resume(tmp_path):
    # the books keep running totals, not every event: a checkpoint's copy does
    # not grow with the run; checkpoints written when the books kept the
    # event list itself still resume to the same state
    X, y = blobs(200, 10, 3, seed=2)
    options = _recycling_options("magnitude")
    whole = _build()
    whole.fit(X, y, **options)
    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(4)], **options)
    books = json.loads(np.load(path)["meta"].tobytes())["config"]["fit"]["recycling"][0]
    assert books["n_events"] > 3 and "events" not in books
    assert sorted(books) == ["n_events", "overlap_n", "overlap_sum", "round"]

    def to_event_list(books, history):
        events = [e for r in history for e in r["recycle_events"]]
        assert len(events) == books["n_events"]
        for key in ("n_events", "overlap_sum", "overlap_n"):
            del books[key]
        books["events"] = events

    old = tmp_path / "old.npz"
    _rewrite_books(path, old, to_event_list)
    resumed = _build()
    resumed.fit(X, y, checkpoint=old, resume=True, **options)
    assert_same_training_state(whole, resumed)
    assert resumed.recycling_summary == whole.recycling_summary


@pytest.mark.parametrize("key, value, message", [
    ("n_events", -0.5, "valid n_events"),
    ("n_events", -1, "valid n_events"),
    ("n_events", True, "valid n_events"),
    ("overlap_sum", [0.5], "overlap totals"),
    ("overlap_sum", [float("nan"), 0.0], "overlap totals"),
    ("overlap_n", [1, -1], "overlap totals"),
    ("overlap_n", None, "overlap totals"),
    ("events", [{"overlap": [0.5]}], "event list is malformed"),
    ("events", [{"overlap": ["x", None]}], "event list is malformed"),
    ("events", {}, "event list is malformed"),
])
def test_tampered_recycling_totals_are_refused(tmp_path, key, value, message):
    X, y = blobs(200, 10, 3, seed=2)
    options = _recycling_options("magnitude")
    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(2)], **options)
    bad = tmp_path / "bad.npz"
    _rewrite_books(path, bad, lambda books, history: books.update({key: value}))
    model = _build()
    with pytest.raises(sm.CheckpointError, match=message):
        model.fit(X, y, checkpoint=bad, resume=True, **options)
    assert model.epochs_trained == 0 and not model.history


def test_resume_with_another_recycling_strategy_is_refused(tmp_path):
    X, y = blobs(100, 10, 3)
    path = tmp_path / "run.npz"
    options = _recycling_options("redo")
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(2)], **options)
    other = {**options, "recycling": sm.ReDo(tau=0.4, every_steps=9, interpolate_steps=5)}
    with pytest.raises(sm.InvalidInputError, match="recycling: saved"):
        _build().fit(X, y, checkpoint=path, resume=True, **other)
    with pytest.raises(sm.InvalidInputError, match="recycling"):
        _build().fit(X, y, checkpoint=path, resume=True, **OPTIONS)


@pytest.mark.parametrize("name, key, value, message", [
    ("magnitude", "recycling.core.weight_col", lambda a: a + 10_000, "outside layer"),
    ("magnitude", "recycling.core.weight_delta", lambda a: np.full_like(a, np.nan), "weight change"),
    ("magnitude", "recycling.core.blend_weights", lambda a: a + 1, "counts add up"),
    ("magnitude", "recycling.core.protected_ids", lambda a: np.append(a, [-1]), "holds -1, out of range"),
    ("magnitude", "recycling.core.activity_sum_abs", lambda a: np.append(a, [1.0]), "activity is off"),
    ("magnitude", "recycling.0.counts.1", lambda a: a.astype(np.float64), "counts.1"),
    ("magnitude", "recycling.0.immune_until.0", lambda a: a[:-1], "immune_until.0"),
    ("magnitude", "recycling.core.blend_steps", None, "'blend_steps' is missing"),
    ("cbp", "recycling.core.activity_utility", lambda a: a[:-1], "counts add up"),
    ("cbp", "recycling.core.activity_decay", lambda a: a + 1, "decay must be in"),
    ("cbp", "recycling.0.age.0", lambda a: a[:-1], "age.0"),
])
def test_tampered_recycling_books_are_refused(tmp_path, name, key, value, message):
    X, y = blobs(200, 10, 3, seed=2)
    options = _recycling_options(name)
    path = tmp_path / "run.npz"
    with pytest.raises(_Stop):
        _build().fit(X, y, checkpoint=path, callbacks=[_interrupt_after(2)], **options)
    arrays = dict(np.load(path))
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value(arrays[key])
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    model = _build()
    with pytest.raises(sm.CheckpointError, match=message):
        model.fit(X, y, checkpoint=bad, resume=True, **options)
    assert model.epochs_trained == 0 and not model.history
    assert_same_training_state(model, _build())  # the refused checkpoint left the model as it was


def test_a_path_that_cannot_be_written_is_refused_before_training(tmp_path):
    # a directory, or a file under a missing directory or under a file: refused
    # up front, not after the epochs it would have cost
    X, y = blobs(60, 10, 3)
    (tmp_path / "afile").write_text("x")
    for path, message in [(tmp_path, "is a directory"),
                          (tmp_path / "missing" / "run.npz", "is not a directory"),
                          (tmp_path / "afile" / "run.npz", "is not a directory")]:
        model = _build()
        with pytest.raises(sm.InvalidInputError, match=message):
            model.fit(X, y, checkpoint=path, **OPTIONS)
        assert model.epochs_trained == 0
        with pytest.raises(sm.InvalidInputError, match=message):
            model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_a_setting_added_later_with_a_none_default_does_not_block_resuming():
    """A checkpoint written before SET gained ``layers`` resumes with SET();
    a real difference is still refused."""
    from sparse_mlp.training.checkpoint import differences

    old = {"epochs": 4, "topology": {"type": "SET", "zeta": 0.3, "every": 1}}
    new = {"epochs": 4, "topology": {"type": "SET", "zeta": 0.3, "every": 1, "layers": None}}
    assert differences(old, new) == []
    assert differences(old, dict(new, topology={**new["topology"], "zeta": 0.1}))
    assert differences(old, dict(new, topology={**new["topology"], "layers": [0]}))
    assert differences(old, dict(new, epochs=5)) == ["epochs: saved 4, given 5"]
