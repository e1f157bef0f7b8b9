"""Every command and example of README.md runs, as a user would run it.

Commands are found in the README itself: the indented command blocks and
the inline code spans that start with a program (``sparse-mlp``, ``python``,
``pip``, ``cargo``, ``mpiexec``, ``bash``). Each must have an entry in
:data:`RUNS`, which says how it is run here: as written, or in a reduced
form for long benchmarks (one or two epochs, one seed, ``--smoke`` sizes).
A README command without an entry fails the first test, so a new command
cannot go untested. The Python blocks run too (with fewer epochs), and the
claim that the command line "runs the same job" as the Python example is
checked weight for weight.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import sparse_mlp as sm
from doc_commands import blocks, commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BIN = os.path.dirname(sys.executable)

# How each README command runs here: "as is", extra arguments appended to it
# (argparse keeps the last value of a repeated flag), or where else it runs.
RUNS: dict[str, str] = {
    "python3 -m venv .venv && . .venv/bin/activate && pip install .": "install",
    "pip install .": "install",
    "pip wheel .": "install",
    "bash scripts/build-wheel.sh": "tests/test_wheel.py",
    "pip install --only-binary=:all: "
    "dist/sparse_mlp-0.1.0-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl": "tests/test_wheel.py",
    'pip install ".[mpi]"': "install",
    "pip install mpich": "install",
    "sparse-mlp train --out run": "install",
    "sparse-mlp evaluate run/model.npz": "install",
    "sparse-mlp info run/model.npz": "install",
    "sparse-mlp train --data madelon --data-dir ../shared/data/madelon": "install",
    "bash scripts/test.sh": "this is the test command: CI runs it, and it runs this file",
    "cargo test": "run by scripts/test.sh",
    "sparse-mlp train --help": "as is",
    "cargo bench": "-- --test",
    "python benches/compare.py": "--smoke",
    "python benches/compare.py --workloads W1 --repeats 5": "--smoke",
    "python benches/compare.py --workloads W1,W2,W3,W5 --w3-sizes 8192": "--smoke",
    "python benches/madelon.py --seeds 5": "--seeds 1 --epochs 2",
    "python benches/w4.py": "--smoke",
    "python benches/w4.py --models sweep": "--smoke",
    "python benches/w4.py --inference-only": "--smoke",
    "python benches/w4.py --models w4d --precision bfloat16": "--smoke",
    "python benches/wasap.py": "--seeds 1 --epochs 2 --workloads madelon --results /dev/null",
    "python benches/wasap.py --workloads madelon --seeds 3 --hosts 3 --rates none --overlap off "
    "--transport float32,bfloat16": "tests/test_hosts.py",
    "python benches/wasap.py --workloads w1 --seeds 1 --hosts 3 --rates none,1gbit,100mbit --overlap off "
    "--transport float32,bfloat16": "tests/test_hosts.py",
    "python benches/wasap.py --workloads w1 --seeds 1 --epochs 8 --hosts 3 --rates none,1gbit,100mbit "
    "--overlap off,on --one-host": "tests/test_hosts.py",
    "python benches/recycling.py": "--seeds 1 --epochs 2",
    'python benches/recycling.py --every 200 --fraction 0.05 --only "none;magnitude, initial;magnitude, '
    'initial, immunity 5;random, initial (control);largest, initial (control)"': "--seeds 1 --epochs 2",
    "python benches/recycling.py --mode overhead": "--repeats 1",
    "python benches/soak.py --epochs 12000": "--smoke",
    "sparse-mlp train --data madelon --data-dir ../shared/data/madelon --prune --save madelon.npz":
        "same job",
    "sparse-mlp predict madelon.npz ../shared/data/madelon/madelon_valid.data": "same job",
    'pip install ".[tensorboard]"': "install",
    "sparse-mlp train --data madelon --data-dir ../shared/data/madelon --optimizer adam --schedule cosine "
    "--early-stopping 20 --restore-best --class-weight balanced --tensorboard runs/tb":
        "--epochs 3 --early-stopping 1",
    "python benches/features.py --dataset madelon --seeds 3": "--smoke",
    "python benches/paper.py --datasets fashion_mnist --rows all_relu,relu --settings paper --seeds 3 "
    "--threads 1": "--smoke",
    "python benches/paper.py --datasets fashion_mnist --rows all_relu,all_relu_ip --settings preset "
    "--seeds 3 --threads 1": "--smoke",
    "python benches/paper.py --datasets higgs --rows all_relu,relu,dense --settings paper --seeds 3 "
    "--threads 1": "--smoke",
    "python benches/paper.py --table": "as is",
    "python benches/paper.py --datasets madelon --rows all_relu --settings paper --seeds 15 --threads 1 "
    "--precision float32,bfloat16": "--smoke",
    "python benches/paper.py --datasets fashion_mnist --rows all_relu --settings preset --seeds 3 "
    "--threads 1 --precision bfloat16": "--smoke",
    "sparse-mlp bench --profile --threads 1": "--samples 500 --epochs 1",
    "python benches/torch_export.py --threads 2": "--smoke",
    "python benches/torch_export.py --threads 2 --w4c --only-w4": "--smoke",
    "python benches/paper.py --figure docs/fashion_mnist_curves.png": "as is",
    "python benches/ablation.py --table": "as is",
    "python benches/features.py --dataset fashion_mnist --epochs 100": "--smoke",
    "sparse-mlp train --data madelon --data-dir ../shared/data/madelon --topology rigl --rigl-every 50 "
    "--rigl-stop 20000": "--epochs 2",
    "python benches/paper.py --datasets madelon,higgs --rows all_relu --settings paper --topology "
    "rigl1,rigl4,rigl_exact --seeds 3 --threads 1": "--smoke",
    "python benches/paper.py --datasets fashion_mnist --rows all_relu --settings paper --topology "
    "set,rigl1,rigl4,rigl_exact --seeds 3 --epochs 100 --threads 1": "--smoke",
    "python benches/paper.py --datasets madelon --rows all_relu --settings paper --topology "
    "rigl4_epoch,rigl_exact_epoch --seeds 3 --threads 1": "--smoke",
    "python benches/paper.py --topology-table": "as is",
    "python benches/rigl_cost.py": "--smoke",
}


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def python_blocks() -> list[str]:
    return blocks(readme(), "python")


def test_every_readme_command_is_run_here():
    found = commands(readme())
    assert len(found) >= 20
    missing = [c for c in found if c not in RUNS]
    assert not missing, f"README commands without a way to run them in RUNS: {missing}"
    stale = [c for c in RUNS if c not in found]
    assert not stale, f"RUNS lists commands the README no longer has: {stale}"


@pytest.fixture
def beside_shared(tmp_path, madelon_dir):
    """A working folder with ../shared next to it, as the README assumes."""
    shared = os.path.dirname(os.path.dirname(os.path.abspath(madelon_dir)))
    os.symlink(shared, tmp_path / "shared")
    work = tmp_path / "work"
    work.mkdir()
    return work


def _run(command: str, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    env = dict(os.environ if env is None else env)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, executable="/bin/bash")


@pytest.mark.parametrize("command", [c for c, how in RUNS.items()
                                     if how == "as is" or how.startswith("-")])
def test_readme_command_runs(command, beside_shared):
    how = RUNS[command]
    line = command if how == "as is" else f"{command} {how}"
    cwd = ROOT if command.startswith("cargo") else beside_shared
    if command.startswith("python benches/"):
        line = line.replace("python benches/", f"{shlex.quote(sys.executable)} {ROOT}/benches/", 1)
    r = _run(line, cwd)
    assert r.returncode == 0, f"{line}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr


def test_the_two_commands_in_a_fresh_environment(tmp_path, madelon_dir):
    """The README's install line and first commands, literally, in a copy of
    the repository with its own .venv (the Rust build reuses this checkout's
    compiled artifacts through CARGO_TARGET_DIR); then the wheel and the MPI
    extra the README names."""
    repo = tmp_path / "main"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in files.stdout.decode().split("\0"):
        if name and os.path.isfile(os.path.join(ROOT, name)):
            os.makedirs(repo / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), repo / name)
    shared = os.path.dirname(os.path.dirname(os.path.abspath(madelon_dir)))
    os.symlink(shared, tmp_path / "shared")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["CARGO_TARGET_DIR"] = os.path.join(ROOT, "target")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != BIN)
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install ."
    first = "sparse-mlp train --out run"

    def sh(command: str) -> subprocess.CompletedProcess:
        r = subprocess.run(f". .venv/bin/activate 2>/dev/null; {command}", shell=True, cwd=repo,
                           env=env, capture_output=True, text=True, timeout=1800,
                           executable="/bin/bash")
        assert r.returncode == 0, f"{command}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    sh(install + " --quiet --disable-pip-version-check")
    r = sh(first)
    # the README: "the final test accuracy is about 92 % after 20 epochs", model and metrics in run/
    accuracy = float(re.search(r"final test accuracy ([0-9.]+)", r.stdout).group(1))
    assert 0.89 <= accuracy <= 0.95, r.stdout
    assert "epoch 20/20" in r.stdout
    assert {"model.npz", "metrics.jsonl", "metrics.csv", "checkpoint.npz"} <= set(os.listdir(repo / "run"))
    ev = sh("sparse-mlp evaluate run/model.npz")
    assert f"accuracy {accuracy:.4f}" in ev.stdout
    assert "trained 20 epochs" in sh("sparse-mlp info run/model.npz").stdout
    # run twice, the first command refuses to replace the first run's folder
    again = subprocess.run(f". .venv/bin/activate; {first}", shell=True, cwd=repo, env=env,
                           capture_output=True, text=True, timeout=600, executable="/bin/bash")
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr
    sh("sparse-mlp train --data madelon --data-dir ../shared/data/madelon --epochs 1")
    # `pip wheel .` makes a wheel for Python 3.9 and later (abi3)
    sh("pip wheel . --no-deps --quiet -w wheels")
    assert any(re.search(r"-cp39-abi3-.*\.whl$", n) for n in os.listdir(repo / "wheels"))
    # the MPI extra and runtime give mpi4py and an mpiexec
    sh('pip install ".[mpi]" --quiet --disable-pip-version-check && pip install mpich --quiet')
    sh("mpiexec -n 2 python -c 'from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 2'")
    # the guide's install lines, as written, give what they say
    with open(os.path.join(ROOT, "docs", "guide.md")) as f:
        guide = f.read()
    lines = [c for c in commands(guide) if c.startswith("pip install")]
    assert len(lines) == 7
    for line in lines:
        sh(line + " --quiet --disable-pip-version-check")
    sh("python -c 'import matplotlib, sklearn, mpi4py, tqdm, scipy, tensorboardX, safetensors, torch; "
       "import sparse_mlp as sm; "
       "sm.SparseMLPClassifier, sm.SparseMLPRegressor, sm.callbacks.TensorBoard(\"tb\")'")


def _reduced(block: str, **replacements: str) -> str:
    for old, new in replacements.items():
        assert old in block, old
        block = block.replace(old, new)
    return block


def test_the_python_example_and_the_command_line_train_the_same_model(beside_shared):
    """The README's Madelon example (3 epochs, pruning from epoch 2) and the
    command line it names (the same reductions) reach the same weights."""
    madelon = next(b for b in python_blocks() if "load_madelon" in b and "WASAP" not in b)
    code = _reduced(madelon, **{"epochs=500": "epochs=3", "start_epoch=200": "start_epoch=2"})
    python_dir, cli_dir = beside_shared / "python", beside_shared / "cli"
    python_dir.mkdir()
    cli_dir.mkdir()
    (python_dir / "example.py").write_text(code.replace("../shared", "../../shared"))
    r = _run(f"{shlex.quote(sys.executable)} example.py", python_dir)
    assert r.returncode == 0, r.stderr
    command, predict = [c for c in RUNS if RUNS[c] == "same job"]
    assert command in " ".join(readme().split())
    r = _run(command.replace("../shared", "../../shared") + " --epochs 3 --prune-start 2 --quiet", cli_dir)
    assert r.returncode == 0, r.stderr
    python, cli = sm.SparseMLP.load(python_dir / "madelon.npz"), sm.SparseMLP.load(cli_dir / "madelon.npz")
    assert python.sizes == cli.sizes and python.sizes[1] == 400
    assert any(r.get("pruned_neurons") for r in python.history)  # it pruned
    for a, b in zip(python.layers, cli.layers):
        np.testing.assert_array_equal(a.to_scipy().toarray(), b.to_scipy().toarray())
        np.testing.assert_array_equal(a.bias, b.bias)
    assert [r["val_accuracy"] for r in python.history] == [r["val_accuracy"] for r in cli.history]
    # the command line's model keeps Madelon's labels, and `predict` prints them
    assert cli.classes_.tolist() == [-1, 1]
    p = _run(predict.replace("../shared", "../../shared"), cli_dir)
    assert p.returncode == 0, p.stderr
    assert set(p.stdout.split()) <= {"-1", "1"} and len(p.stdout.split()) == 600


def test_the_wasap_example_under_mpiexec(beside_shared):
    block = next(b for b in python_blocks() if "WASAP" in b)
    assert "mpiexec -n 3 python train_wasap.py" in block
    (beside_shared / "train_wasap.py").write_text(_reduced(block, **{"epochs=500": "epochs=2"}))
    r = _run("MPIEXEC_TIMEOUT=300 mpiexec -n 3 python train_wasap.py", beside_shared)
    assert r.returncode == 0, r.stderr[-3000:]
    accuracy, connections = r.stdout.strip().split("\n")[-1].split()  # its print(), after the progress
    assert 0.4 < float(accuracy) <= 1 and int(connections) > 1000
    assert sm.SparseMLP.load(beside_shared / "wasap.npz")._config["fit"]["finished"]


def test_the_recycling_example(beside_shared):
    block = next(b for b in python_blocks() if "NeuronRecycling" in b)
    (beside_shared / "recycling.py").write_text(block)
    r = _run(f"{shlex.quote(sys.executable)} recycling.py", beside_shared)
    assert r.returncode == 0, r.stderr
    per_layer, histogram = r.stdout.strip().split("\n")
    assert len(json.loads(per_layer)) == 2  # two hidden layers


def test_the_training_features_example(beside_shared):
    block = next(b for b in python_blocks() if "EarlyStopping" in b)
    (beside_shared / "features.py").write_text(_reduced(block, **{"epochs=500": "epochs=8",
                                                                  "patience=20": "patience=2"}))
    r = _run(f"{shlex.quote(sys.executable)} features.py", beside_shared)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().split("\n")[-2:]
    epochs, best_epoch, exact = first.split()
    assert 1 <= int(best_epoch) <= int(epochs) <= 8 and exact == "True"
    assert 0.5 <= float(second) <= 1
    assert list((beside_shared / "runs" / "tb").glob("events.out.tfevents.*"))
