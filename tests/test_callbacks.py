"""sm.callbacks: early stopping (restoring the best epoch exactly), the best
model's checkpoint, TensorBoard files read back, the hooks' order, and a
callback's state across a resumed run."""

import glob
import struct

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs

C = sm.callbacks


def data(seed=0):
    X, y = blobs(n=400, f=10, c=3, seed=seed)
    X = X + np.random.default_rng(seed).normal(scale=2.0, size=X.shape).astype(np.float32)  # overlap
    return (X[:250], y[:250]), (X[250:], y[250:])


def test_early_stopping_restores_the_best_epochs_weights_and_topology_exactly():
    (X, y), val = data()
    model = sm.SparseMLP([10, 48, 32, 3], epsilon=4, seed=1)
    stop = C.EarlyStopping(patience=3)
    seen = []

    class Snapshot(C.Callback):
        def on_evaluated(self, run, record):  # the model the record's metrics were measured on
            seen.append((record["epoch"], [run.model._net.layer_state(i) for i in range(3)]))

    history = model.fit(X, y, epochs=200, learning_rate=0.05, validation_data=val, verbose=0,
                        callbacks=[stop, Snapshot()], topology=sm.SET(0.3))
    assert len(history) < 200 and stop.stopped_epoch == history[-1]["epoch"]
    best = min(history, key=lambda r: r["val_loss"])
    assert (stop.best, stop.best_epoch) == (best["val_loss"], best["epoch"])
    assert stop.best_epoch < history[-1]["epoch"]
    assert model.evaluate(*val)["loss"] == stop.best  # exactly, not approximately
    assert model.evaluate(*val)["accuracy"] == best["val_accuracy"]
    states = dict(seen)[stop.best_epoch]
    for i, st in enumerate(states):
        now = model._net.layer_state(i)
        for k in ("col_ptr", "row_idx", "values", "bias"):
            np.testing.assert_array_equal(now[k], st[k])
    # SET changed the topology after the best epoch was measured
    assert any(not np.array_equal(seen[-1][1][i]["row_idx"], states[i]["row_idx"]) for i in range(3))


def test_early_stopping_modes_and_restore_off():
    (X, y), val = data(1)
    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=2)
    stop = C.EarlyStopping(monitor="val_accuracy", patience=2, restore_best=False)
    assert stop.mode == "max"
    history = model.fit(X, y, epochs=100, learning_rate=0.05, validation_data=val, verbose=0,
                        callbacks=[stop])
    assert stop.best == max(r["val_accuracy"] for r in history)
    last = history[-1]["val_accuracy"]
    # not restored: the model is the last epoch's (after its SET step)
    assert len(history) < 100 and stop.wait >= 2 and last <= stop.best


@pytest.mark.parametrize("kwargs, match", [
    (dict(patience=-1), "patience"),
    (dict(patience=2.5), "patience"),
    (dict(min_delta=float("nan")), "min_delta"),
    (dict(mode="largest"), "mode"),
    (dict(monitor=3), "monitor"),
])
def test_bad_early_stopping_settings(kwargs, match):
    with pytest.raises(sm.InvalidInputError, match=match):
        C.EarlyStopping(**kwargs)


def test_early_stopping_without_validation_data_is_refused_before_training():
    (X, y), _ = data()
    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=2)
    with pytest.raises(sm.InvalidInputError, match="no validation data"):
        model.fit(X, y, epochs=3, verbose=0, callbacks=[C.EarlyStopping()])
    assert model.epochs_trained == 0
    history = model.fit(X, y, epochs=3, verbose=0, callbacks=[C.EarlyStopping(monitor="loss")])
    assert len(history) == 3
    with pytest.raises(sm.InvalidInputError, match="'val_r2'"):
        model.fit(X, y, epochs=1, verbose=0, validation_data=(X, y),
                  callbacks=[C.EarlyStopping(monitor="val_r2")])


def test_model_checkpoint_keeps_the_best_model_and_never_replaces_another_file(tmp_path):
    (X, y), val = data()
    path = tmp_path / "best.npz"
    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=3)
    history = model.fit(X, y, epochs=12, learning_rate=0.05, validation_data=val, verbose=0,
                        callbacks=[C.ModelCheckpoint(path)])
    best = min(history, key=lambda r: r["val_loss"])
    saved = sm.SparseMLP.load(path)
    assert saved.epochs_trained == best["epoch"] and saved.history[-1]["val_loss"] == best["val_loss"]
    assert saved.evaluate(*val)["loss"] == best["val_loss"]
    with pytest.raises(sm.InvalidInputError, match="does not replace"):
        model.fit(X, y, epochs=1, validation_data=val, verbose=0, callbacks=[C.ModelCheckpoint(path)])
    assert sm.SparseMLP.load(path).epochs_trained == best["epoch"]
    every = tmp_path / "every.npz"
    model.fit(X, y, epochs=2, validation_data=val, verbose=0,
              callbacks=[C.ModelCheckpoint(every, save_best_only=False)])
    assert sm.SparseMLP.load(every).epochs_trained == model.epochs_trained


def _events(log_dir):
    """The (tag, step, value) scalars and histogram tags of tensorboardX's files, read back."""
    from tensorboardX.proto.event_pb2 import Event
    scalars, histograms = [], []
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        with open(path, "rb") as f:
            raw = f.read()
        at = 0
        while at < len(raw):
            (n,) = struct.unpack("<Q", raw[at:at + 8])
            event = Event.FromString(raw[at + 12:at + 12 + n])
            at += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("histo"):
                    histograms.append((v.tag, event.step, v.histo.num))
                else:
                    scalars.append((v.tag, event.step, v.simple_value))
    return scalars, histograms


def test_tensorboard_writes_scalars_and_weight_histograms(tmp_path):
    pytest.importorskip("tensorboardX")
    (X, y), val = data()
    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=3)
    history = model.fit(X, y, epochs=3, validation_data=val, verbose=0,
                        learning_rate=sm.schedules.Cosine(0.05), callbacks=[C.TensorBoard(tmp_path)],
                        recycling=sm.NeuronRecycling(every_steps=5, fraction=0.1))
    scalars, histograms = _events(tmp_path)
    by_tag = {}
    for tag, step, value in scalars:
        by_tag.setdefault(tag, {})[step] = value
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "n_connections"):
        assert by_tag[f"metrics/{key}"] == pytest.approx({r["epoch"]: r[key] for r in history}), key
    assert by_tag["layer_connections/layer0"][3] == history[-1]["layer_connections"][0]
    assert set(by_tag["recycled/layer0"]) == {1, 2, 3}
    assert {(t, s) for t, s, _ in histograms} == {(f"weights/layer{i}", s) for i in (0, 1) for s in (1, 2, 3)}
    assert all(n == model._net.layer_nnz[int(t[-1])] for t, s, n in histograms if s == 3)


def test_a_callbacks_state_is_resumed_with_the_run(tmp_path):
    (X, y), val = data(2)
    kw = dict(epochs=10, learning_rate=0.05, validation_data=val, verbose=0)
    whole_stop = C.EarlyStopping(patience=50)
    whole = sm.SparseMLP([10, 32, 3], epsilon=4, seed=4)
    whole.fit(X, y, callbacks=[whole_stop], **kw)

    def stop_at(epoch):
        def cb(model, record):
            if record["epoch"] == epoch:
                raise KeyboardInterrupt
        return cb

    path = tmp_path / "run.npz"
    with pytest.raises(KeyboardInterrupt):
        sm.SparseMLP([10, 32, 3], epsilon=4, seed=4).fit(
            X, y, checkpoint=path, callbacks=[C.EarlyStopping(patience=50), stop_at(7)], **kw)
    again_stop = C.EarlyStopping(patience=50)
    again = sm.SparseMLP([10, 32, 3], epsilon=4, seed=4)
    again.fit(X, y, checkpoint=path, resume=True, callbacks=[again_stop, stop_at(99)], **kw)
    assert (again_stop.best, again_stop.best_epoch, again_stop.wait) == \
        (whole_stop.best, whole_stop.best_epoch, whole_stop.wait)
    assert_same_training_state(whole, again)  # both restored the same best epoch
    assert again.evaluate(*val)["loss"] == whole_stop.best


def test_a_raising_callback_leaves_the_model_and_checkpoint_of_the_last_epoch(tmp_path):
    (X, y), val = data()

    class Broken(C.Callback):
        def on_evaluated(self, run, record):
            if record["epoch"] == 3:
                raise RuntimeError("broken")

    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=5)
    with pytest.raises(RuntimeError, match="broken"):
        model.fit(X, y, epochs=5, verbose=0, validation_data=val, callbacks=[Broken()],
                  checkpoint=tmp_path / "run.npz")
    saved = sm.SparseMLP.load(tmp_path / "run.npz")
    assert saved.epochs_trained == 2 and len(model.history) == 2
