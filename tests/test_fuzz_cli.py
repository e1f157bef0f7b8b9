"""Fuzzing the command line: flags and TOML config files (hypothesis).

Every command is run in-process through ``sparse_mlp.cli.main`` with a
mostly valid argument list in which up to two settings are drawn from bad
values (out of range, NaN/inf, huge, not numbers, paths that are
directories, missing or unwritable, files of the wrong kind), sometimes
through a generated or garbled ``--config`` file. Each run must end in one
of three ways:

- exit status 0;
- exit status 2 with one ``sparse-mlp: error: ...`` line on stderr (the
  package's own errors);
- argparse's usage error (``SystemExit(2)``) for a flag it converts itself.

Any exception escaping ``main`` (which would print a traceback) fails the
test. A refused ``train`` leaves no file behind; a successful one with
``--save`` wrote a model that loads. The calls are counted with the rest of
the fuzz suite ("fuzz cases: N" in the summary).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparse_mlp as sm
from sparse_mlp import cli
from test_fuzz import CASES, FUZZ

NUMBERS = st.sampled_from([0, -1, -(2**70), 2**32, 2**64, 10**30, 1e-300, -0.5, 1.5,
                           math.nan, math.inf, -math.inf, "x", "", "1,2", " "])


def _files(root):
    """The fixed inputs: data tables of several kinds and a trained model."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6))
    y = np.array(["no", "yes", "maybe"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]

    def table(name, rows, header="a,b,c,d,e,f,answer"):
        path = root / name
        path.write_text(header + "\n" + "\n".join(rows) + "\n")
        return str(path)

    f = {
        "train": table("train.csv", [",".join(f"{v:.4f}" for v in r) + f",{c}" for r, c in zip(X, y)]),
        "test": table("test.csv", [",".join(f"{v:.4f}" for v in r) + f",{c}"
                                   for r, c in zip(X[:20] + 0.1, y[:20])]),
        "features": table("features.csv", [",".join(f"{v:.4f}" for v in r) for r in X[:10]],
                          "a,b,c,d,e,f"),
        "wide": table("wide.csv", [",".join(f"{v:.4f}" for v in r) + ",1,yes" for r in X[:10]],
                      "a,b,c,d,e,f,g,answer"),
        "nan": table("nan.csv", ["nan,1,2,3,4,5,yes", "1,2,3,4,5,6,no"]),
        "empty": table("empty.csv", [], ""),
        "dir": str(root),
        "missing": str(root / "missing.csv"),
        "under_a_file": str(root / "train.csv" / "x.npz"),
    }
    model = root / "model.npz"
    assert cli.main(["train", "--train", f["train"], "--hidden", "8,8", "--epochs", "2",
                     "--quiet", "--save", str(model)]) == 0
    f["model"] = str(model)
    f["truncated"] = str(root / "truncated.npz")
    (root / "truncated.npz").write_bytes(model.read_bytes()[:500])
    return f


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("cli_fuzz"))


def _floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False)


# Each train setting: a strategy of good values and one of bad values (as
# Python values; a flag gets str(value), a config file the typed value).
# Good values stay small so that every accepted run is quick.
TRAIN = {
    "hidden": (st.lists(st.integers(1, 12), min_size=1, max_size=3),
               st.one_of(st.lists(st.sampled_from([0, -1, 2**32, 3 * 10**9, 2**64]), min_size=1,
                                  max_size=2), st.sampled_from(["x", "", "1.5", []]))),
    "epochs": (st.integers(1, 3), st.sampled_from([0, -1, -(2**70), "x", 1.5, math.nan, ""])),
    "batch-size": (st.integers(1, 80), st.sampled_from([0, -1, "x", 1.5, -(2**64)])),
    "learning-rate": (_floats(1e-3, 0.1), NUMBERS),
    "momentum": (_floats(0, 0.95), NUMBERS),
    "weight-decay": (_floats(0, 1e-3), NUMBERS),
    "epsilon": (_floats(1, 8), NUMBERS),
    "density": (_floats(0.2, 1), NUMBERS),
    "alpha": (_floats(0, 1), NUMBERS),
    "dropout": (_floats(0, 0.5), NUMBERS),
    "seed": (st.integers(0, 2**32), NUMBERS),
    "zeta": (_floats(0, 0.5), NUMBERS),
    "set-every": (st.integers(1, 3), st.sampled_from([0, -1, 2**64, "x"])),
    "prune-start": (st.integers(1, 2), st.sampled_from([0, -1, 2**64, 1.5])),
    "prune-every": (st.integers(1, 2), st.sampled_from([0, -1, 2**64])),
    "prune-percentile": (_floats(1, 50), NUMBERS),
    "threads": (st.integers(1, 2), st.sampled_from([0, -1, 5000, 2**70, "x"])),
    "init": (st.sampled_from(["he_uniform", "xavier", "normal"]), st.sampled_from(["zeros", ""])),
    "activation": (st.sampled_from(["all_relu", "relu", "tanh", "sigmoid"]), st.just("gelu")),
    "recycling": (st.sampled_from(["none", "magnitude", "random", "largest", "redo", "cbp"]),
                  st.just("all")),
    "recycle-every": (st.integers(1, 10), st.sampled_from([0, -1, 2**64])),
    "recycle-fraction": (_floats(0.01, 0.5), NUMBERS),
    "recycle-reinit": (st.sampled_from(["initial", "matrix_normal", "copy", "zero"]), st.just("x")),
    "recycle-outgoing": (st.sampled_from(["reinit", "zero", "keep"]), st.just("x")),
    "recycle-immunity": (st.integers(0, 3), st.sampled_from([-1, -(2**64)])),
    "recycle-interpolate": (st.integers(0, 5), st.sampled_from([-1, 2**40, 2**64])),
    "redo-tau": (_floats(0, 1), NUMBERS),
    "cbp-rate": (_floats(1e-3, 0.1), NUMBERS),
    "cbp-maturity": (st.integers(1, 10), st.sampled_from([-1, 0, 2**64])),
    "midpoint": (_floats(0, 0.1), NUMBERS),
    "checkpoint-every": (st.integers(1, 2), st.sampled_from([0, -1, 2**64])),
    "test-fraction": (_floats(0.2, 0.5), NUMBERS),
    "label": (st.sampled_from(["answer", "-1", "6"]), st.sampled_from(["99", "-99", "nope", "0", ""])),
    "phase2-fraction": (_floats(0, 1), NUMBERS),
    "verbose": (st.sampled_from([0, 1, 2]), st.sampled_from([3, -1, "x", 1.5])),
}
SWITCHES = ["nesterov", "no-shuffle", "prune", "prune-shrink", "quiet", "resume", "overwrite",
            "no-bias-decay"]
PATHS = {  # settings naming files: good and bad choices among the fixed files
    "test": (["test"], ["wide", "nan", "empty", "missing", "dir", "model", "features"]),
    "save": (["new"], ["dir", "under_a_file", "train"]),
    "out": (["new"], ["under_a_file", "train"]),
    "checkpoint": (["new"], ["dir", "under_a_file", "truncated", "model", "train"]),
    "data": ([], ["synthetic", "madelon", "mnist", "cifar10", "higgs", "imagenet"]),
    "data-dir": ([], ["dir", "missing", "train"]),
}


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string


def _flag_value(v):
    return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)


@st.composite
def train_settings(draw, files, tmp):
    """(name, value) pairs: a few settings, up to two of them bad."""
    names = draw(st.lists(st.sampled_from(sorted(TRAIN) + sorted(PATHS) + SWITCHES),
                          max_size=6, unique=True), "settings")
    n_bad = min(len(names), draw(st.sampled_from([0, 0, 1, 1, 2]), "how many bad"))
    bad = set(draw(st.permutations(names), "bad")[:n_bad])
    chosen = []
    for name in names:
        if name in SWITCHES:
            chosen.append((name, draw(st.booleans(), name) if name in bad else True))
        elif name in PATHS:
            good, wrong = PATHS[name]
            pick = draw(st.sampled_from(wrong if name in bad or not good else good), name)
            chosen.append((name, str(tmp / f"{name}.out") if pick == "new" else
                           pick if name == "data" else files[pick]))
        else:
            good, wrong = TRAIN[name]
            chosen.append((name, draw(wrong if name in bad else good, name)))
    return chosen


@st.composite
def config_file(draw, chosen, tmp):
    """Some settings moved into a TOML file (as typed values, or strings,
    under a table or not, dashed or underscored), or a garbled file."""
    kind = draw(st.sampled_from(["none", "none", "toml", "toml", "toml", "garbage", "wrong types"]),
                "config")
    if kind == "none":
        return chosen, None
    path = tmp / "run.toml"
    moved = draw(st.lists(st.sampled_from(range(len(chosen))), unique=True), "moved") if chosen else []
    if kind == "garbage":
        path.write_bytes(draw(st.binary(max_size=60), "bytes"))
    else:
        lines, tables = [], []
        for i in moved:
            name, value = chosen[i]
            key = name if draw(st.booleans(), "dashed") else name.replace("-", "_")
            if kind == "wrong types" or draw(st.integers(0, 5), "as string") == 0:
                value = draw(st.sampled_from([[value], {"v": 1}, str(value), True]), "wrapped")
            text = f"{key} = {_toml_value(value) if not isinstance(value, dict) else '{v = 1}'}"
            (tables if draw(st.booleans(), "in a table") else lines).append(text)
        if draw(st.integers(0, 4), "unknown key") == 0:
            lines.append("colour = 'red'")
        path.write_text("\n".join(lines + (["[model]"] + tables if tables else [])) + "\n")
    return [c for i, c in enumerate(chosen) if i not in moved], str(path)


def _run(kind, argv, capsys):
    """Runs the command line; returns "ok" or "refused" (and stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own conversion and choice errors
        err = capsys.readouterr().err
        assert e.code == 2 and "error:" in err, (argv, e.code, err)
        CASES[kind, "refused"] += 1
        return "refused", err
    err = capsys.readouterr().err
    if code == 0:
        CASES[kind, "ok"] += 1
        return "ok", err
    assert code == 2, (argv, code, err)
    lines = [line for line in err.splitlines() if line.startswith("sparse-mlp: error: ")]
    assert len(lines) == 1 and len(lines[0]) > len("sparse-mlp: error: ") + 5, (argv, err)
    CASES[kind, "refused"] += 1
    return "refused", err


@pytest.fixture
def threads():
    before = sm.get_num_threads()
    yield
    sm.set_num_threads(before)


@FUZZ
@given(data=st.data())
def test_train(files, tmp_path_factory, capsys, threads, data):
    tmp = tmp_path_factory.mktemp("train")
    chosen = data.draw(train_settings(files, tmp))
    flags, config = data.draw(config_file(chosen, tmp))
    argv = ["train", "--train", files["train"], "--hidden", "6", "--epochs", "2", "--quiet"]
    for name, value in flags:
        if name in SWITCHES:
            argv += [f"--{name}"] if value else []
        else:
            argv += [f"--{name}", _flag_value(value)]
    if config:
        argv += ["--config", config]
    before = set(os.listdir(tmp))
    outcome, err = _run("cli.train", argv, capsys)
    save = dict(flags).get("save")
    if outcome == "ok" and save and os.path.isfile(save):
        model = sm.SparseMLP.load(save)
        assert model.predict(np.zeros((2, 6), np.float32)).shape == (2,)
    left = set(os.listdir(tmp)) - before
    assert not [n for n in left if n.endswith(".tmp")], left  # no half-written file
    if outcome == "refused" and "--resume" not in argv:
        # only a checkpoint of epochs that finished (before a divergence) may remain
        assert left <= {"checkpoint.out", "out.out"}, (argv, left, err)


MODELS = ["model"] * 6 + ["truncated", "missing", "dir", "train"]
TABLES = ["test"] * 4 + ["features", "wide", "nan", "empty", "missing", "dir", "model"]


@FUZZ
@given(data=st.data())
def test_evaluate_predict_info_plot_bench(files, tmp_path_factory, capsys, threads, data):
    tmp = tmp_path_factory.mktemp("use")
    pick = lambda choices, label: files[data.draw(st.sampled_from(choices), label)]  # noqa: E731
    command = data.draw(st.sampled_from(["evaluate", "predict", "info", "plot", "bench"]), "command")
    # (the choices below list good values more than once, so that most runs
    # have few bad ones)
    maybe = lambda flag, values: (  # noqa: E731
        [flag, str(data.draw(st.sampled_from(values), flag))] if data.draw(st.booleans(), flag) else [])
    if command == "evaluate":
        argv = ["evaluate", pick(MODELS, "model"), "--test", pick(TABLES, "test"),
                *maybe("--label", ["answer", "-1", "99", "nope"]),
                *(["--json"] if data.draw(st.booleans(), "json") else [])]
    elif command == "predict":
        output = data.draw(st.sampled_from(["", "p.npy", "p.csv", "dir", "under_a_file"]), "output")
        argv = ["predict", pick(MODELS, "model"), pick(TABLES, "input"),
                *maybe("--label", ["answer", "-1", "6", "99"]),
                *(["--proba"] if data.draw(st.booleans(), "proba") else [])]
        if output in ("dir", "under_a_file"):
            argv += ["--output", files[output]]
        elif output:
            argv += ["--output", str(tmp / output)]
    elif command == "info":
        argv = ["info", pick(MODELS, "model"), *maybe("--batch-size", [1, 64, 0, -1, 2**64, "x"]),
                *(["--json"] if data.draw(st.booleans(), "json") else [])]
    elif command == "plot":
        out = data.draw(st.sampled_from(["new", "under_a_file", "train"]), "out")
        argv = ["plot", pick(MODELS[:3] + ["truncated"], "model"),
                "--out", str(tmp / "plots") if out == "new" else files[out],
                *maybe("--image-shape", ["2,3", "3,3", "0", "x", "6"])]
    else:
        argv = ["bench", "--json",
                "--sizes", str(data.draw(st.sampled_from(["6,8,3", "6,8,3", "4,2", "5", "0,3", "x"]),
                                         "sizes")),
                "--samples", str(data.draw(st.sampled_from([50, 50, 1, 0, -1, "x"]), "samples")),
                "--epochs", str(data.draw(st.sampled_from([1, 2, 0, -1]), "epochs")),
                *maybe("--epsilon", [2, 0, -1, "nan", "inf"]),
                *maybe("--batch-size", [16, 0, -1, 2**64]),
                *maybe("--threads", [1, 0, 5000, 2**70])]
    outcome, _ = _run(f"cli.{command}", argv, capsys)
    if outcome == "ok" and command == "predict" and "--output" in argv:
        written = argv[argv.index("--output") + 1]
        assert os.path.isfile(written)


def test_parallel_without_mpiexec_is_a_clear_error(files, tmp_path):
    # --parallel in a single process (no mpiexec): refused with a message,
    # run in a subprocess because it initializes MPI
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "sparse_mlp", "train", "--train", files["train"],
                        "--hidden", "6", "--epochs", "1", "--parallel", "wasap", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "sparse-mlp: error:" in r.stderr and "Traceback" not in r.stderr


SEEN: Counter = Counter()


def _files_in(folder):
    """Every regular file under ``folder`` and its bytes."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


@FUZZ
@given(data=st.data())
def test_command_sequences(files, tmp_path_factory, capsys, threads, monkeypatch, data):
    """Random sessions over one folder: training runs (new, reusing a
    checkpoint or run folder with or without --resume/--overwrite, some
    interrupted by Ctrl-C in a drawn epoch), then evaluate, predict and info
    on what they left. No command may raise out of ``main``; a refused
    command changes no file; the models and checkpoints there always load,
    and a saved model can always be evaluated and used to predict."""
    tmp = tmp_path_factory.mktemp("session")
    steps = data.draw(st.lists(st.sampled_from(
        ["train", "train", "evaluate", "predict", "info", "evaluate-test"]), min_size=2, max_size=7),
        "steps")
    from sparse_mlp.training import loop

    interrupt = {"epoch": None}
    real_epoch = loop._Loop._epoch

    def fit_epoch(self, *args, **kwargs):
        record = real_epoch(self, *args, **kwargs)
        if interrupt["epoch"] is not None and self.model.epochs_trained == interrupt["epoch"]:
            raise KeyboardInterrupt  # as Ctrl-C would, in the next epoch's first batches
        return record

    monkeypatch.setattr(loop._Loop, "_epoch", fit_epoch)
    for step in steps:
        before = _files_in(tmp)
        model = str(tmp / data.draw(st.sampled_from(["m.npz", "run/model.npz", "ck.npz"]), "model"))
        if step == "train":
            where = data.draw(st.sampled_from([["--checkpoint", "ck.npz"], ["--out", "run"], []]), "where")
            argv = ["train", "--train", files["train"], "--label", "answer", "--hidden", "6", "--quiet",
                    "--epochs", str(data.draw(st.integers(2, 3), "epochs")), *where,
                    *(["--save", "m.npz"] if data.draw(st.booleans(), "save") else []),
                    *data.draw(st.sampled_from([[], [], ["--resume"], ["--overwrite"]]), "mode")]
            interrupt["epoch"] = data.draw(st.sampled_from([None, None, 1, 2]), "Ctrl-C after epoch")
        elif step == "evaluate":
            argv = ["evaluate", model]
        elif step == "evaluate-test":
            argv = ["evaluate", model, "--test", files["test"], "--label", "answer"]
        elif step == "predict":
            argv = ["predict", model, files["features"], *(["--proba"] if data.draw(st.booleans()) else [])]
        else:
            argv = ["info", model, "--json"]
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            code = cli.main(argv)
        finally:
            os.chdir(cwd)
            interrupt["epoch"] = None
        err = capsys.readouterr().err
        CASES["cli.sequence", "ok" if code == 0 else "refused"] += 1
        SEEN[step, code] += 1
        assert code in (0, 2, 130), (argv, code, err)
        after = _files_in(tmp)
        assert not [n for n in after if n.endswith(".tmp")], after.keys()
        if code == 2:
            lines = [line for line in err.splitlines() if line.startswith("sparse-mlp: error: ")]
            assert len(lines) == 1, (argv, err)
            if step != "train" or "--overwrite" not in argv:
                # nothing lost: every file is still there, unchanged
                assert {k: v for k, v in after.items() if k in before} == before, (argv, err)
        if code == 130:
            assert "resume with:" in err or "cannot be resumed" in err, err
        for name in after:
            if name.endswith(".npz"):
                sm.SparseMLP.load(tmp / name)  # whole and loadable
        if step != "train" and os.path.isfile(model):
            # a model the command line wrote is always usable, on its own data too
            assert code == 0, (argv, err)


def test_the_sequences_covered_each_outcome():
    if not SEEN:
        pytest.skip("the sequence fuzzer did not run in this session")
    for outcome in [("train", 0), ("train", 2), ("train", 130), ("evaluate", 0), ("predict", 0),
                    ("info", 0), ("evaluate-test", 0)]:
        assert SEEN[outcome] > 0, (outcome, SEEN)
