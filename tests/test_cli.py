"""The sparse-mlp command line, end to end."""

import re
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "sparse_mlp", *args], capture_output=True,
                          text=True, timeout=600)


def test_train_on_the_builtin_data_then_info(tmp_path):
    model = tmp_path / "model.npz"
    r = run("train", "--epochs", "3", "--hidden", "200,200", "--save", str(model))
    assert r.returncode == 0, r.stderr
    acc = float(re.search(r"final test accuracy ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.5  # 10 classes: chance is 0.1
    assert "epoch 1/3" in r.stdout
    info = run("info", str(model))
    assert info.returncode == 0 and "total connections" in info.stdout


def test_train_on_madelon(madelon_dir):
    r = run("train", "--data", "madelon", "--data-dir", madelon_dir, "--epochs", "5", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "500-400-100-400-2" in r.stdout and "final test accuracy" in r.stdout


def test_errors_are_reported_without_a_traceback(tmp_path):
    r = run("train", "--data", "madelon", "--data-dir", str(tmp_path))
    assert r.returncode == 2 and "not found" in r.stderr and "Traceback" not in r.stderr
    r = run("info", str(tmp_path / "nothing.npz"))
    assert r.returncode == 2 and "no model file" in r.stderr
