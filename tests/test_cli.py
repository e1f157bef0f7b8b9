"""The sparse-mlp command line, end to end (real subprocesses)."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import sparse_mlp as sm
from sparse_mlp.metrics import read_metrics


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sparse_mlp", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def test_train_on_the_builtin_data_then_info_and_evaluate(tmp_path):
    out = tmp_path / "run"
    r = run("train", "--epochs", "3", "--hidden", "200,200", "--out", out)
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"final test accuracy ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.5  # 10 classes: chance is 0.1
    assert "epoch 1/3" in r.stdout
    info = run("info", out / "model.npz")
    assert info.returncode == 0 and "total connections" in info.stdout
    ev = run("evaluate", out / "model.npz", "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(acc, abs=1e-4)
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["val_accuracy"] == pytest.approx(acc, abs=1e-4)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(acc, abs=1e-4)
    assert rows[0]["layer_connections"].count(";") == 2
    settings = json.loads((out / "settings.json").read_text())
    assert settings["hidden"] == [200, 200] and settings["epochs"] == 3 and settings["momentum"] == 0.9


def test_train_on_madelon_with_a_config_file_and_overrides(tmp_path, madelon_dir):
    config = tmp_path / "run.toml"
    config.write_text(f"""
data = "madelon"
data_dir = "{madelon_dir}"
[model]
hidden = [50, 20]
alpha = 0.4
[training]
epochs = 9
batch-size = 64
prune = true
prune_start = 1
prune_every = 1
no_shuffle = true
""")
    out = tmp_path / "run"
    r = run("train", "--config", config, "--epochs", "2", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("final test accuracy") and r.stdout.count("\n") == 1  # the result only
    s = json.loads((out / "settings.json").read_text())
    assert s["epochs"] == 2 and s["hidden"] == [50, 20] and s["alpha"] == 0.4
    assert s["batch_size"] == 64 and s["prune"] is True and s["shuffle"] is False
    assert s["init"] == "normal" and s["epsilon"] == 10.0  # the Madelon preset
    model = sm.SparseMLP.load(out / "model.npz")
    assert model.sizes == [500, 50, 20, 2]  # pruned at epoch 1, the layers' width kept
    assert model.n_connections < model.history[0]["n_connections"]
    ev = run("evaluate", out / "model.npz", "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["samples"] == 600
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(model.history[-1]["val_accuracy"])


def test_train_on_madelon_preset(madelon_dir):
    r = run("train", "--data", "madelon", "--data-dir", madelon_dir, "--epochs", "5")
    assert r.returncode == 0, r.stderr
    assert "500-400-100-400-2" in r.stdout and "final test accuracy" in r.stdout


@pytest.mark.parametrize("text, message", [
    ("epochs = 'many'\n", "epochs"),
    ("colour = 'red'\n", "unknown settings \\['colour'\\]"),
    ("init = 'zeros'\n", "init must be one of"),
    ("prune = 1\n", "prune must be true or false"),
    ("epochs = [\n", "not valid TOML"),
])
def test_bad_config_files(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    r = run("train", "--config", config)
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
    assert "Traceback" not in r.stderr


def _table(path, n=240, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    with open(path, "w") as f:
        f.write("a,b,c,d,e,f,answer\n")
        for row, label in zip(X, y):
            f.write(",".join(f"{v:.6f}" for v in row) + f",{label}\n")
    return X, y


def test_file_data_train_predict_evaluate(tmp_path):
    X, y = _table(tmp_path / "train.csv")
    _table(tmp_path / "test.csv", n=100, seed=1)
    model = tmp_path / "m.npz"
    r = run("train", "--train", tmp_path / "train.csv", "--test", tmp_path / "test.csv", "--label", "answer",
            "--hidden", "32", "--epochs", "30", "--save", model, "--quiet")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "features.csv", "w") as f:
        f.write("a,b,c,d,e,f\n")
        for row in X[:50]:
            f.write(",".join(f"{v:.6f}" for v in row) + "\n")
    p = run("predict", model, tmp_path / "features.csv")
    assert p.returncode == 0, p.stderr
    predicted = p.stdout.split()
    assert len(predicted) == 50 and set(predicted) <= {"yes", "no"}
    assert np.mean(np.array(predicted) == y[:50]) > 0.8
    # The same through Python: the model stores the training scaling and classes.
    loaded = sm.SparseMLP.load(model)
    scaling = loaded._config["data"]
    Xs = ((X[:50] - np.array(scaling["mean"])) / np.array(scaling["std"])).astype(np.float32)
    assert predicted == loaded.predict(Xs).tolist()
    p = run("predict", model, tmp_path / "features.csv", "--proba", "--output", tmp_path / "p.npy")
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), loaded.predict_proba(Xs), rtol=1e-5)
    ev = run("evaluate", model, "--test", tmp_path / "test.csv", "--label", "answer", "--json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["accuracy"] == pytest.approx(loaded.history[-1]["val_accuracy"])


def test_checkpoint_and_resume_from_the_command_line(tmp_path):
    # recycling with interpolations that outlast an epoch (79 steps)
    args = ["train", "--epochs", "4", "--hidden", "64", "--zeta", "0.2", "--quiet",
            "--recycling", "magnitude", "--recycle-every", "30", "--recycle-interpolate", "100",
            "--recycle-immunity", "1"]
    whole = tmp_path / "whole.npz"
    assert run(*args, "--save", whole).returncode == 0
    ck = tmp_path / "ck.npz"
    partial = run(*args[:2], "2", *args[3:], "--checkpoint", ck)
    assert partial.returncode == 0
    # A checkpoint of a 2-epoch run cannot continue as a 4-epoch run.
    refused = run(*args, "--checkpoint", ck, "--resume")
    assert refused.returncode == 2 and "epochs: saved 2, given 4" in refused.stderr
    ck4 = tmp_path / "ck4.npz"
    interrupted = _kill_after_epochs(args + ["--checkpoint", ck4], ck4, 2)
    assert interrupted
    resumed = tmp_path / "resumed.npz"
    r = run(*args, "--checkpoint", ck4, "--resume", "--save", resumed, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    a, b = sm.SparseMLP.load(whole), sm.SparseMLP.load(resumed)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.to_scipy().toarray(), lb.to_scipy().toarray())
    assert [r["recycled"] for r in a.history] == [r["recycled"] for r in b.history] == [[2], [3], [2], [3]]
    assert a.history[-1]["recycling_summary"] == b.history[-1]["recycling_summary"]
    # the metrics files hold the whole run (its history), the saved epochs too
    assert [r["epoch"] for r in read_metrics(tmp_path / "out")] == [1, 2, 3, 4]


def _kill_after_epochs(args, checkpoint, epochs):
    """Starts training and SIGKILLs it once the checkpoint holds ``epochs`` epochs."""
    import time

    proc = subprocess.Popen([sys.executable, "-m", "sparse_mlp", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if sm.SparseMLP.load(checkpoint)._config["fit"]["done"] >= epochs:
                    proc.kill()
                    proc.wait()
                    return sm.SparseMLP.load(checkpoint)._config["fit"]["done"] < 4
            except sm.CheckpointError:
                pass
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_recycling_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    r = run("train", "--epochs", "2", "--hidden", "100,100", "--recycling", "magnitude",
            "--recycle-every", "20", "--recycle-fraction", "0.05", "--recycle-immunity", "2",
            "--midpoint", "0.5", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    records = read_metrics(out)
    assert sum(sum(rec["recycled"]) for rec in records) == 2 * (10_000 // 128 + 1) // 20 * 10
    summary = sm.SparseMLP.load(out / "model.npz").history[-1]["recycling_summary"]
    assert summary["events"] == 7 and [layer["recycled"] for layer in summary["layers"]] == [35, 35]


def test_plot_bench_and_info_json(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--epochs", "2", "--hidden", "64", "--out", out, "--quiet").returncode == 0
    p = run("plot", out / "model.npz", "--out", tmp_path / "plots", "--image-shape", "10,20")
    assert p.returncode == 0, p.stderr
    names = sorted(line.rsplit("/", 1)[-1] for line in p.stdout.split())
    assert names == ["connections.png", "importance.png", "input_connectivity.png", "learning_curves.png"]
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    b = run("bench", "--sizes", "50,40,3", "--samples", "500", "--epochs", "2", "--json")
    assert b.returncode == 0, b.stderr
    bench = json.loads(b.stdout)
    assert bench["connections"] == sum(sm.connection_counts([50, 40, 3], epsilon=20))
    assert "profile" not in bench
    b = run("bench", "--sizes", "50,40,30,3", "--samples", "500", "--epochs", "2", "--profile")
    assert b.returncode == 0, b.stderr
    rows = [line.split(" | ") for line in b.stdout.splitlines() if line.startswith("| ")][1:]
    parts = [r[0].lstrip("| ") for r in rows]
    assert parts[:3] == ["input gather and targets", "forward, layer 1 (activation, dropout folded in)",
                         "forward, layer 2 (activation, dropout folded in)"]
    assert "backward, layer 1" in parts and parts[-1] == "SET (between epochs)"
    assert sum(float(r[2].rstrip(" %")) for r in rows) == pytest.approx(100, abs=0.1 * len(rows))
    assert all(r[3].strip(" |") for r in rows if r[0].startswith(("| forward", "| backward")))
    info = json.loads(run("info", out / "model.npz", "--json").stdout)
    assert info["sizes"] == [200, 64, 10] and info["epochs_trained"] == 2
    assert sum(layer["nnz"] for layer in info["layers"]) == info["connections"]
    plan = json.loads(run("info", out / "model.npz", "--json", "--batch-size", "64").stdout)
    expected = sm.SparseMLP.load(out / "model.npz").memory_estimate(64)
    assert plan["training_memory"] == {"batch_size": 64, **expected,
                                       "available": plan["training_memory"]["available"]}


def test_errors_are_reported_without_a_traceback(tmp_path):
    r = run("train", "--data", "madelon", "--data-dir", tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = run("info", tmp_path / "nothing.npz")
    assert r.returncode == 2 and "no model file" in r.stderr
    r = run("train", "--resume")
    assert r.returncode == 2 and "--resume needs --checkpoint" in r.stderr
    r = run("train", "--train", tmp_path / "missing.csv")
    assert r.returncode == 2 and "not found" in r.stderr
    r = run("plot", tmp_path / "nothing.npz", "--out", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_outputs_that_cannot_be_written_are_refused_before_training(tmp_path):
    X, _ = _table(tmp_path / "train.csv")
    (tmp_path / "afile").write_text("x")
    for flag, path, message in [("--save", tmp_path, "is a directory"),
                                ("--save", tmp_path / "no" / "m.npz", "is not a directory"),
                                ("--out", tmp_path / "afile" / "run", "cannot make the folder"),
                                ("--checkpoint", tmp_path, "is a directory")]:
        r = run("train", "--train", tmp_path / "train.csv", "--hidden", "8", "--epochs", "3",
                flag, path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "epoch 1/" not in r.stdout and "final test accuracy" not in r.stdout  # not trained
    config = tmp_path / "binary.toml"
    config.write_bytes(b"\x80\xff")
    r = run("train", "--config", config)
    assert r.returncode == 2 and "not valid TOML" in r.stderr
