"""The examples in the public docstrings run and print what they claim."""

import doctest
import importlib
import os
import re
import subprocess
import sys

import pytest

from doc_commands import commands, indented_block_after

MODULES = ["sparse_mlp", "sparse_mlp.model", "sparse_mlp.recycling", "sparse_mlp.activations",
           "sparse_mlp.datasets", "sparse_mlp.metrics", "sparse_mlp.estimator", "sparse_mlp.callbacks",
           "sparse_mlp.schedules", "sparse_mlp.optimizers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


GUIDE = os.path.join(os.path.dirname(__file__), "..", "docs", "guide.md")


def test_the_guide_runs(tmp_path, monkeypatch, madelon_dir):
    """Runs every Python block of docs/guide.md in order, from a folder that
    sits next to ``shared/data`` as the guide assumes."""
    shared = os.path.dirname(os.path.dirname(os.path.abspath(madelon_dir)))
    os.symlink(shared, tmp_path / "shared")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with open(GUIDE) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert len(blocks) >= 10
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/guide.md block {i + 1}", "exec"), namespace)
    assert namespace["again"].epochs_trained == 4
    assert namespace["stop"].best_epoch > 0 and namespace["regressor"].evaluate(
        namespace["Xr"][800:], namespace["yr"][800:])["r2"] > 0.9
    assert namespace["rebuilt"].sizes == namespace["model"].sizes
    assert os.path.exists("figures/input_connectivity.png")
    # then the command-line session, in the same folder (patients.csv is the
    # Data section's), in the guide's order, long runs shortened
    with open(GUIDE) as f:
        guide = f.read()
    with open("madelon.toml", "w") as f:
        f.write(indented_block_after(guide, "# madelon.toml"))
    found = commands(guide)
    missing = [c for c in found if c not in GUIDE_RUNS]
    assert not missing, f"guide commands without a way to run them in GUIDE_RUNS: {missing}"
    assert not [c for c in GUIDE_RUNS if c not in found], "GUIDE_RUNS lists commands the guide lost"
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], MPIEXEC_TIMEOUT="300")
    outputs = {}
    for command in found:
        how = GUIDE_RUNS[command]
        if how != "as is" and not how.startswith("-"):
            continue
        line = command if how == "as is" else f"{command} {how}"
        r = subprocess.run(line, shell=True, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0 and "Traceback" not in r.stderr, f"{line}\n{r.stdout}\n{r.stderr}"
        outputs[command] = r.stdout
    predictions = open("predictions.csv").read().split()
    assert predictions[0] == "prediction" and set(predictions[1:]) == {"-1", "1"}
    patients = [c for c in found if c.startswith("sparse-mlp predict patients.npz")][0]
    assert outputs[patients].split("\n")[0] == "ALL,AML"
    resumed = [c for c in found if c.endswith("--resume")][0]
    assert "had finished all 3 epochs" in outputs[resumed]


# How each command of the guide runs in test_the_guide_runs: as written,
# with arguments appended (a repeated flag's last value counts), or elsewhere.
GUIDE_RUNS = {
    "pip install .": "the fresh environment of test_readme.py",
    'pip install ".[plot]"': "the fresh environment of test_readme.py",
    'pip install ".[sklearn]"': "the fresh environment of test_readme.py",
    'pip install ".[mpi]" mpich': "the fresh environment of test_readme.py",
    'pip install ".[tensorboard]"': "the fresh environment of test_readme.py",
    'pip install ".[safetensors]"': "the fresh environment of test_readme.py",
    'pip install ".[torch]"': "the fresh environment of test_readme.py",
    "bash scripts/build-wheel.sh": "tests/test_wheel.py",
    "python -m sparse_mlp": "--help",
    "sparse-mlp train --epochs 5": "as is",
    "sparse-mlp train --data madelon --data-dir ../shared/data/madelon --prune --out runs/madelon":
        "--epochs 2",
    "sparse-mlp evaluate runs/madelon/model.npz": "as is",
    "sparse-mlp predict runs/madelon/model.npz ../shared/data/madelon/madelon_valid.data --output "
    "predictions.csv": "as is",
    "sparse-mlp info runs/madelon/model.npz --batch-size 64": "as is",
    "sparse-mlp plot runs/madelon/model.npz --out runs/madelon/figures": "as is",
    "sparse-mlp train --train patients.csv --label type --hidden 200,200 --epochs 50 --save patients.npz":
        "as is",
    "sparse-mlp evaluate patients.npz": "as is",
    "sparse-mlp predict patients.npz patients.csv --label type --proba": "as is",
    "sparse-mlp train --config madelon.toml --epochs 100 --checkpoint ck.npz": "--epochs 3",
    "sparse-mlp train --config madelon.toml --epochs 100 --checkpoint ck.npz --resume": "--epochs 3",
    "sparse-mlp bench --sizes 784,1000,1000,1000,10 --epsilon 20": "as is",
    "sparse-mlp train --data madelon --data-dir ../shared/data/madelon --optimizer adam --schedule cosine "
    "--early-stopping 20 --restore-best --tensorboard runs/tb": "--epochs 4 --early-stopping 1",
    "mpiexec -n 3 sparse-mlp train --data madelon --data-dir ../shared/data/madelon --parallel wasap "
    "--out runs/wasap": "--epochs 2",
    "mpiexec -n K+1": "a placeholder for the command above",
    "mpiexec -f hosts -n 4 sparse-mlp train --data madelon --data-dir ../shared/data/madelon --parallel "
    "wasap --threads 2 --timeout 120 --out runs/cluster": "tests/test_hosts.py",
    "python scripts/netns_hosts.py": "tests/test_hosts.py",
    "python benches/wasap.py --hosts 3 --rates none,1gbit,100mbit": "tests/test_hosts.py",
    "sparse-mlp info": "a mention of the session's info command",
}
