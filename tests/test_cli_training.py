"""The command line's training features as a user types them: the optimizer,
a schedule, early stopping on a validation split, class weights, TensorBoard
logs, the same settings from a TOML file, and their bad values."""

import json
import re
import subprocess
import sys

import pytest

import sparse_mlp as sm


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sparse_mlp", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


BASE = ("train", "--hidden", "64,64", "--epsilon", "5", "--verbose", "2")


def test_adam_cosine_early_stopping_class_weights_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboardX")
    out, logs = tmp_path / "run", tmp_path / "tb"
    r = run(*BASE, "--epochs", "40", "--optimizer", "adam", "--schedule", "cosine",
            "--schedule-warmup", "2", "--early-stopping", "3", "--restore-best", "--class-weight",
            "balanced", "--tensorboard", logs, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    held = re.search(r"validation: (\d+) samples held out", r.stdout)
    assert held, r.stdout
    m = re.search(r"test accuracy ([0-9.]+) \((?:stopped after epoch (\d+); )?best val_loss ([0-9.]+) "
                  r"at epoch (\d+), restored\)", r.stdout)
    assert m, r.stdout
    records = sm.read_metrics(out)
    best = min(records, key=lambda rec: rec["val_loss"])
    assert int(m.group(4)) == best["epoch"] and float(m.group(3)) == pytest.approx(best["val_loss"], abs=1e-4)
    assert records[0]["learning_rate"] < records[2]["learning_rate"]  # the warm-up
    assert list(logs.glob("events.out.tfevents.*"))
    settings = json.loads((out / "settings.json").read_text())
    assert settings["optimizer"] == "adam" and settings["learning_rate"] == 1e-3  # Adam's default rate
    model = sm.SparseMLP.load(out / "model.npz")
    assert model.epochs_trained == records[-1]["epoch"]
    ev = run("evaluate", out / "model.npz", "--json")
    assert ev.returncode == 0 and json.loads(ev.stdout)["accuracy"] == pytest.approx(float(m.group(1)),
                                                                                      abs=1e-4)


def test_the_same_settings_from_a_toml_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("""
hidden = [48]
epsilon = 5
epochs = 6
[training]
optimizer = "sgd"
schedule = "step"
schedule_every = 2
schedule_factor = 0.5
learning_rate = 0.04
class_weight = "balanced"
""")
    r = run("train", "--config", config, "--out", tmp_path / "run", "--verbose", "0")
    assert r.returncode == 0, r.stderr
    rates = [rec["learning_rate"] for rec in sm.read_metrics(tmp_path / "run")]
    assert rates == pytest.approx([0.04, 0.04, 0.02, 0.02, 0.01, 0.01])
    plateau = run("train", "--hidden", "32", "--epochs", "4", "--schedule", "plateau",
                  "--schedule-patience", "1", "--verbose", "0")
    assert plateau.returncode == 0, plateau.stderr
    assert "held out of the training data for val_loss" not in plateau.stdout  # (verbose 0)
    assert re.search(r"test accuracy [0-9.]+, \d+ connections", plateau.stdout), plateau.stdout


@pytest.mark.parametrize("args, message", [
    (("--early-stopping", "-2"), "expected a whole number >= 0, got '-2'"),
    (("--optimizer", "rmsprop"), "invalid choice: 'rmsprop'"),
    (("--schedule", "linear"), "invalid choice: 'linear'"),
    (("--restore-best",), "--restore-best goes with --early-stopping"),
    (("--early-stopping", "2", "--validation-fraction", "1.5"), "--validation-fraction must be between"),
    (("--schedule", "cosine", "--final-learning-rate", "1.0"), "final"),
    (("--class-weight", "inverse"), "invalid choice: 'inverse'"),
])
def test_bad_training_flags_are_one_line_errors(args, message):
    r = run(*BASE, "--epochs", "1", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_a_bad_toml_value_names_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('optimizer = "lbfgs"\n')
    r = run("train", "--config", config, "--epochs", "1")
    assert r.returncode == 2 and "optimizer must be one of" in r.stderr and "Traceback" not in r.stderr
