"""Whole command-line sessions, as a new user runs them: every step a real
``sparse-mlp`` subprocess, each outcome checked (what it printed, what it
wrote, what it refused, and that no traceback reached the terminal)."""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state

SPARSE_MLP = [sys.executable, "-m", "sparse_mlp"]


def cli(*args, cwd, umask: int | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    def child() -> None:
        if umask is not None:
            os.umask(umask)

    r = subprocess.run([*SPARSE_MLP, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, preexec_fn=child)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert r.returncode in (0, 2, 130), (r.returncode, r.stderr)
    return r


def ok(*args, cwd, **kw) -> subprocess.CompletedProcess:
    r = cli(*args, cwd=cwd, **kw)
    assert r.returncode == 0, r.stderr
    return r


def refused(*args, cwd, match: str) -> str:
    """A command that must end with one ``sparse-mlp: error:`` line."""
    r = cli(*args, cwd=cwd)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().split("\n")
    assert lines[-1].startswith("sparse-mlp: error: ") and re.search(match, lines[-1]), r.stderr
    assert "allow_pickle" not in r.stderr
    return lines[-1]


def write_table(path, n=300, seed=0, labels=("no", "yes"), header=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = np.array(labels)[(X[:, 0] + X[:, 1] > 0).astype(int)]
    with open(path, "w") as f:
        if header:
            f.write("a,b,c,d,e,f,label\n")
        for row, label in zip(X, y):
            f.write(",".join(f"{v:.6f}" for v in row) + f",{label}\n")
    return X, y


def test_a_csv_with_a_header_train_evaluate_predict(tmp_path):
    X, y = write_table(tmp_path / "t.csv")
    r = ok("train", "--train", "t.csv", "--label", "label", "--hidden", "32", "--epochs", "20",
           "--save", "m.npz", cwd=tmp_path)
    final = float(re.search(r"final test accuracy ([0-9.]+)", r.stdout).group(1))
    held_out = int(re.search(r"(\d+) test samples", r.stdout).group(1))
    assert 70 <= held_out <= 80  # a stratified quarter of 300
    # evaluate remembers the data: the held-out quarter of t.csv
    ev = ok("evaluate", "m.npz", cwd=tmp_path)
    assert f"accuracy {final:.4f}" in ev.stdout and f"({held_out} samples)" in ev.stdout
    # the data's own labels come back, and probabilities are headed by them
    with open(tmp_path / "new.csv", "w") as f:
        f.write("a,b,c,d,e,f\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in X[:40]))
    predicted = ok("predict", "m.npz", "new.csv", cwd=tmp_path).stdout.split()
    assert len(predicted) == 40 and set(predicted) <= {"no", "yes"}
    assert np.mean(np.array(predicted) == y[:40]) > 0.8
    ok("predict", "m.npz", "new.csv", "--proba", "--output", "p.csv", cwd=tmp_path)
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["no", "yes"] and len(rows) == 41
    np.testing.assert_allclose(np.array(rows[1:], dtype=float).sum(axis=1), 1, atol=1e-5)
    # the same table's file moved away: a one-line error that says what to do
    os.rename(tmp_path / "t.csv", tmp_path / "moved.csv")
    refused("evaluate", "m.npz", cwd=tmp_path, match="not there now; give the test data with --test")
    ev = ok("evaluate", "m.npz", "--test", "moved.csv", "--label", "label", cwd=tmp_path)
    assert "(300 samples)" in ev.stdout


def test_madelon_with_its_own_files_and_labels(tmp_path, madelon_dir):
    ok("train", "--data", "madelon", "--data-dir", madelon_dir, "--hidden", "50", "--epochs", "2",
       "--save", "m.npz", "--quiet", cwd=tmp_path)
    model = sm.SparseMLP.load(tmp_path / "m.npz")
    assert model.classes_.tolist() == [-1, 1]
    # the UCI files end their lines in a blank, and hold no label column
    p = ok("predict", "m.npz", os.path.join(madelon_dir, "madelon_valid.data"), cwd=tmp_path)
    assert set(p.stdout.split()) == {"-1", "1"} and len(p.stdout.split()) == 600
    p = ok("predict", "m.npz", os.path.join(madelon_dir, "madelon_valid.data"), "--proba",
           cwd=tmp_path)
    assert p.stdout.split("\n")[0] == "-1,1"
    ev = ok("evaluate", "m.npz", "--json", cwd=tmp_path)
    assert '"samples": 600' in ev.stdout
    # a feature file with one value too few says where, counting from 1
    lines = open(os.path.join(madelon_dir, "madelon_valid.data")).read().split("\n")
    lines[4] = " ".join(lines[4].split()[:-1])
    (tmp_path / "bad.data").write_text("\n".join(lines))
    refused("predict", "m.npz", "bad.data", cwd=tmp_path, match=r"line 5: 499 columns")


def test_a_checkpoint_is_never_replaced_by_another_run(tmp_path):
    base = ["train", "--hidden", "64", "--quiet", "--checkpoint", "ck.npz"]
    ok(*base, "--epochs", "4", cwd=tmp_path)
    before = (tmp_path / "ck.npz").read_bytes()
    message = refused(*base, "--epochs", "2", cwd=tmp_path, match="epoch 4 of 4")
    assert "--resume" in message and "--overwrite" in message
    assert (tmp_path / "ck.npz").read_bytes() == before
    # the finished run, resumed: it says so and trains nothing
    r = ok(*base[:-3], "--checkpoint", "ck.npz", "--epochs", "4", "--resume", cwd=tmp_path)
    assert "had finished all 4 epochs" in r.stdout and "epoch 1/" not in r.stdout
    assert (tmp_path / "ck.npz").read_bytes() == before
    # --overwrite starts the new run in its place
    ok(*base, "--epochs", "2", "--overwrite", cwd=tmp_path)
    assert sm.SparseMLP.load(tmp_path / "ck.npz")._config["fit"]["plan"]["epochs"] == 2
    # a run folder (--out) is a run's too
    ok("train", "--hidden", "64", "--epochs", "1", "--out", "run", "--quiet", cwd=tmp_path)
    refused("train", "--hidden", "64", "--epochs", "1", "--out", "run", cwd=tmp_path,
            match="run/checkpoint.npz holds the checkpoint of a run at epoch 1 of 1")
    # the same from Python
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises(sm.InvalidInputError, match="overwrite=True"):
        sm.SparseMLP([4, 8, 2], epsilon=2, seed=0).fit(X, y, epochs=1, verbose=0,
                                                       checkpoint=tmp_path / "ck.npz")
    assert sm.SparseMLP.load(tmp_path / "ck.npz")._config["fit"]["plan"]["epochs"] == 2


def in_a_terminal(args, cwd, interrupt_when: bytes, timeout=300) -> tuple[int, str]:
    """Runs ``sparse-mlp args`` on a pseudo-terminal of its own and types
    Ctrl-C (the terminal turns it into SIGINT for the foreground process
    group, as for a user) once ``interrupt_when`` has been printed."""
    master, slave = pty.openpty()

    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in an interactive shell
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([*SPARSE_MLP, *map(str, args)], stdin=slave, stdout=slave, stderr=slave,
                            cwd=cwd, preexec_fn=child)
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and interrupt_when in out:
                os.write(master, b"\x03")
                sent = True
            if proc.poll() is not None and not ready:
                break
        assert sent, out.decode(errors="replace")[-2000:]
        return proc.wait(timeout=60), out.decode(errors="replace").replace("\r\n", "\n")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_ctrl_c_saves_the_last_epoch_and_says_how_to_resume(tmp_path):
    args = ["train", "--hidden", "300,300", "--epochs", "12", "--verbose", "2", "--out", "run",
            "--save", "m.npz"]
    whole = tmp_path / "whole"
    whole.mkdir()
    ok(*args, cwd=whole)
    code, out = in_a_terminal(args, tmp_path, b" 3/12 ")
    assert code == 130, out
    assert "Traceback" not in out
    assert re.search(r"interrupted (after|in) epoch \d+ of 12", out), out
    saved = int(re.search(r"saved m\.npz: the weights after epoch (\d+)", out).group(1))
    assert saved >= 3
    assert "the last completed epoch" in out
    model = sm.SparseMLP.load(tmp_path / "m.npz")
    assert model.epochs_trained == saved == len(model.history)
    resume = re.search(r"resume with: (.*)", out).group(1).strip()
    assert resume == "sparse-mlp " + " ".join(args) + " --resume"
    # resuming as told finishes the run with the weights of the uninterrupted one
    r = ok(*resume.split()[1:], cwd=tmp_path)
    assert f"resuming the run saved in run/checkpoint.npz after epoch {saved} of 12" in r.stdout
    assert_same_training_state(sm.SparseMLP.load(tmp_path / "m.npz"), sm.SparseMLP.load(whole / "m.npz"))
    records = [line for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(records) == 12


def test_ctrl_c_without_a_checkpoint_saves_what_there_is(tmp_path):
    code, out = in_a_terminal(["train", "--hidden", "300,300", "--epochs", "50", "--verbose", "2",
                               "--save", "m.npz"], tmp_path, b" 2/50 ")
    assert code == 130 and "Traceback" not in out
    assert "saved m.npz: the weights when it stopped: after epoch" in out
    assert "cannot be resumed: it has no checkpoint" in out
    assert sm.SparseMLP.load(tmp_path / "m.npz").epochs_trained >= 2


def test_files_that_are_not_models(tmp_path):
    (tmp_path / "notes.npz").write_text("my notes\n")
    np.save(tmp_path / "array.npy", np.arange(5))
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    for command in (["evaluate"], ["info"], ["predict", "{}", "x.csv"], ["plot", "{}", "--out", "figs"]):
        for name, what in (("notes.npz", "a text file"), ("array.npy", "a single numpy array"),
                           ("other.npz", r"a zip archive \(an \.npz\) holding 1 entry \(weights\)")):
            args = [a.format(name) for a in command] if "{}" in command else [*command, name]
            message = refused(*args, cwd=tmp_path, match=f"is not a sparse_mlp model file: it is {what}")
            assert "pickle" not in message


def test_files_follow_the_umask(tmp_path):
    write_table(tmp_path / "t.csv", n=80)
    ok("train", "--train", "t.csv", "--hidden", "8", "--epochs", "2", "--out", "run", "--save", "m.npz",
       "--quiet", cwd=tmp_path, umask=0o022)
    for name in ("m.npz", "run/model.npz", "run/checkpoint.npz", "run/metrics.jsonl",
                 "run/metrics.csv", "run/settings.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    ok("predict", "m.npz", "t.csv", "--label", "label", "--output", "p.csv", cwd=tmp_path, umask=0o027)
    assert stat.S_IMODE(os.stat(tmp_path / "p.csv").st_mode) == 0o640
    # a file's own mode is kept when it is replaced
    os.chmod(tmp_path / "m.npz", 0o600)
    ok("train", "--train", "t.csv", "--hidden", "8", "--epochs", "1", "--save", "m.npz", "--quiet",
       cwd=tmp_path, umask=0o022)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o600


def test_warnings_once_quiet_keeps_the_result_verbose_two(tmp_path, madelon_dir):
    (tmp_path / "madelon.toml").write_text(f"""
data = "madelon"
data_dir = "{madelon_dir}"
[model]
hidden = [60, 30, 60]
[training]
epochs = 12
prune = true
prune_start = 2
prune_every = 2
prune_shrink = true
recycling = "magnitude"
recycle-every = 20
""")
    r = ok("train", "--config", "madelon.toml", cwd=tmp_path)
    warnings = [line for line in r.stderr.split("\n") if "warning" in line.lower()]
    assert len(warnings) == 1 and "changed the width" in warnings[0], r.stderr
    r = ok("train", "--config", "madelon.toml", "--quiet", cwd=tmp_path)
    assert r.stderr == "" and re.fullmatch(r"final test accuracy [0-9.]+ \(best [0-9.]+\), .*\n", r.stdout)
    r = ok("train", "--config", "madelon.toml", "--verbose", "2", "--epochs", "5", cwd=tmp_path)
    assert [int(m) for m in re.findall(r"^epoch (\d)/5", r.stdout, flags=re.M)] == [1, 2, 3, 4, 5]
    r = ok("train", "--config", "madelon.toml", "--verbose", "0", "--epochs", "3", cwd=tmp_path)
    assert "epoch" not in r.stdout and "final test accuracy" in r.stdout
