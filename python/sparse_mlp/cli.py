"""The ``sparse-mlp`` command line (also ``python -m sparse_mlp``).

Commands: ``train``, ``evaluate``, ``predict``, ``bench``, ``info``, ``plot``.
``train`` settings come, lowest priority first, from the built-in defaults,
the data set's preset (SPEC §8), a TOML file (``--config``) and the flags.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core, datasets, labels
from .activations import AllReLU
from .checkpoint import atomic_write, check_writable
from .errors import CheckpointError, InvalidInputError, SparseMLPError
from .memory import available_bytes, format_bytes
from .metrics import MetricsLogger
from .model import SparseMLP, describe_run, format_record, read_meta

# The paper's runs per data set (SPEC §8, its Table 7): network, sparsity,
# initialization, slope, batch, learning rate; 500 epochs. `--paper-settings`
# trains with these as they are.
PAPER: dict[str, dict[str, Any]] = {
    "madelon": dict(hidden=[400, 100, 400], epsilon=10.0, init="normal", alpha=0.5,
                    batch_size=32, learning_rate=0.01, epochs=500),
    "fashion_mnist": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                          batch_size=128, learning_rate=0.01, epochs=500),
    "cifar10": dict(hidden=[4000, 1000, 4000], epsilon=20.0, init="he_uniform", alpha=0.75,
                    batch_size=128, learning_rate=0.01, epochs=500),
    "higgs": dict(hidden=[1000, 1000, 1000], epsilon=10.0, init="xavier", alpha=0.05,
                  batch_size=128, learning_rate=0.01, epochs=500),
}
# What the presets change: the training settings the ablation on the real data
# found best (benches/ablation.py; the README's results), never the network or
# its sparsity.
RECIPES: dict[str, dict[str, Any]] = {
    "madelon": {}, "fashion_mnist": {}, "cifar10": {}, "higgs": {},
}
PRESETS: dict[str, dict[str, Any]] = {
    **{name: {**PAPER[name], **RECIPES[name]} for name in PAPER},
    "synthetic": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                      batch_size=128, learning_rate=0.05, epochs=20),
    "file": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                 batch_size=32, learning_rate=0.01, epochs=100),
}
DEFAULTS: dict[str, Any] = dict(
    data="synthetic", label="-1", test_fraction=0.25, momentum=0.9, weight_decay=2e-4,
    nesterov=False, bias_decay=True, shuffle=True, dropout=0.3, activation="all_relu", zeta=0.3, set_every=1,
    prune=False, prune_start=200, prune_every=10, prune_percentile=None, prune_keep=None,
    prune_shrink=False,
    recycling="none", seed=0, phase2_fraction=0.3, checkpoint_every=1, resume=False, overwrite=False,
    quiet=False, verbose=1, paper_settings=False,
)
PRESETS["mnist"] = PRESETS["fashion_mnist"]  # same shape; the paper ran Fashion-MNIST
PAPER["mnist"] = PAPER["fashion_mnist"]
IMAGE_SHAPES = {"mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (3, 32, 32)}


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sizes


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _data_arguments(p: argparse.ArgumentParser, with_name: bool = True) -> None:
    if with_name:
        p.add_argument("--data", choices=["synthetic", *datasets.DATASETS],
                       help="a known data set (default: synthetic, built in); its files with --data-dir")
        p.add_argument("--data-dir", help="the data set's folder or file (default: found in "
                                          "$SPARSE_MLP_DATA_DIR, ../shared/data or /usr/share/datasets)")
    p.add_argument("--train", help="training data file: .csv/.tsv/.txt[.gz], .npy, .npz, .svm")
    p.add_argument("--test", help="test data file (default: --test-fraction of --train)")
    p.add_argument("--label", help="label column of a table: header name, or index from 0 (-1: the last, "
                                   "the default)")
    p.add_argument("--test-fraction", type=float, help="held-out share without --test (default 0.25)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparse-mlp", description="Truly sparse MLP training on CPUs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a sparse MLP and report its accuracy",
                       argument_default=argparse.SUPPRESS,
                       description="Settings: built-in defaults < the data set's preset < "
                                   "--config file < flags.")
    t.add_argument("--config", help="TOML file of settings named like the flags (e.g. hidden = [400, 100])")
    t.add_argument("--paper-settings", action="store_true",
                   help="with --data: the paper's training settings instead of the preset's recipe")
    _data_arguments(t)
    m = t.add_argument_group("model")
    m.add_argument("--hidden", type=_sizes, help="hidden layer sizes, e.g. 1000,1000,1000")
    m.add_argument("--epsilon", type=float, help="Erdős–Rényi sparsity ε")
    m.add_argument("--density", type=float, help="a global density instead of ε (ERK spread)")
    m.add_argument("--init", choices=list(_core.INIT_NAMES),
                   help="weight distribution; the *_sparse ones scale by a neuron's real fan-in")
    m.add_argument("--activation", choices=["all_relu", "relu", "tanh", "sigmoid"])
    m.add_argument("--alpha", type=float, help="All-ReLU slope")
    m.add_argument("--dropout", type=float)
    m.add_argument("--seed", type=int)
    f = t.add_argument_group("training")
    f.add_argument("--epochs", type=int)
    f.add_argument("--batch-size", type=int)
    f.add_argument("--learning-rate", type=float)
    f.add_argument("--momentum", type=float)
    f.add_argument("--weight-decay", type=float)
    f.add_argument("--nesterov", action="store_true")
    f.add_argument("--no-bias-decay", dest="bias_decay", action="store_false",
                   help="weight decay on the weights only, not the biases")
    f.add_argument("--no-shuffle", dest="shuffle", action="store_false")
    f.add_argument("--zeta", type=float, help="SET fraction (0 disables SET; default 0.3)")
    f.add_argument("--set-every", type=int, help="SET every this many epochs")
    f.add_argument("--prune", action="store_true", help="Importance Pruning")
    f.add_argument("--prune-start", type=int)
    f.add_argument("--prune-every", type=int)
    f.add_argument("--prune-percentile", type=float,
                   help="remove this percentile of each layer's neurons at every event (instead of "
                        "a connection budget)")
    f.add_argument("--prune-keep", type=float,
                   help="share of the connections the pruning events leave (default 0.2)")
    f.add_argument("--prune-shrink", action="store_true",
                   help="remove pruned neurons from the layers (compact them) instead of emptying them")
    f.add_argument("--threads", type=int, help="worker threads (default: all cores)")
    r = t.add_argument_group("neuron recycling")
    r.add_argument("--recycling", choices=["none", "magnitude", "random", "largest", "redo", "cbp"])
    r.add_argument("--recycle-every", type=int, help="training steps between events")
    r.add_argument("--recycle-fraction", type=float,
                   help="share of neurons per event (magnitude/random/largest)")
    r.add_argument("--recycle-reinit", choices=["initial", "matrix_normal", "copy", "zero"])
    r.add_argument("--recycle-outgoing", choices=["reinit", "zero", "keep"])
    r.add_argument("--recycle-immunity", type=int)
    r.add_argument("--recycle-interpolate", type=int, help="steps to blend into the new weights")
    r.add_argument("--redo-tau", type=float)
    r.add_argument("--cbp-rate", type=float)
    r.add_argument("--cbp-maturity", type=int)
    r.add_argument("--midpoint", type=float, help="weight of the midpoint loss (0: off)")
    o = t.add_argument_group("output")
    o.add_argument("--save", help="write the trained model to this file")
    o.add_argument("--out", help="run folder: metrics.jsonl, metrics.csv, settings.json, model.npz")
    o.add_argument("--checkpoint", help="checkpoint file, written every --checkpoint-every epochs "
                                        "(default with --out: DIR/checkpoint.npz)")
    o.add_argument("--checkpoint-every", type=int)
    o.add_argument("--resume", action="store_true", help="continue the run saved in the checkpoint")
    o.add_argument("--overwrite", action="store_true",
                   help="start a new run even where a checkpoint or run folder of another run exists")
    o.add_argument("--verbose", type=int, choices=[0, 1, 2],
                   help="0: the result only; 1: a progress bar (default); 2: a line per epoch")
    o.add_argument("--quiet", action="store_true", help="the result only: no progress, no warnings")
    par = t.add_argument_group("several processes")
    par.add_argument("--parallel", choices=["wasap", "wassp"],
                     help="data-parallel training over MPI; start with mpiexec -n K+1 sparse-mlp train ...")
    par.add_argument("--phase2-fraction", type=float,
                     help="with --parallel: share of the epochs trained locally, then averaged")

    e = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a data set's test split")
    e.add_argument("model")
    _data_arguments(e)
    e.add_argument("--json", action="store_true", help="print the result as JSON")

    pr = sub.add_parser("predict", help="predicted classes (or probabilities) for the samples of a file")
    pr.add_argument("model")
    pr.add_argument("input", help="features: .csv/.tsv/.txt[.gz] (no label column unless --label), "
                                  ".npy, .npz (array X), .svm")
    pr.add_argument("--label", help="the input's label column, which is then ignored")
    pr.add_argument("--output", help=".csv or .npy (default: one prediction per line on stdout)")
    pr.add_argument("--proba", action="store_true", help="class probabilities instead of classes")

    b = sub.add_parser("bench", help="time training epochs of a model shape on random data")
    b.add_argument("--sizes", type=_sizes, default=[784, 1000, 1000, 1000, 10],
                   help="layer sizes (default: W1, 784,1000,1000,1000,10)")
    b.add_argument("--epsilon", type=float, default=20.0)
    b.add_argument("--samples", type=_positive, default=10_000)
    b.add_argument("--batch-size", type=_positive, default=128)
    b.add_argument("--epochs", type=_positive, default=3)
    b.add_argument("--threads", type=int)
    b.add_argument("--json", action="store_true")

    i = sub.add_parser("info", help="summarize a saved model: layers, nnz, density, memory, training")
    i.add_argument("model")
    i.add_argument("--batch-size", type=_positive,
                   help="batch for the training memory estimate (default: the checkpoint's, else 32)")
    i.add_argument("--json", action="store_true")

    pl = sub.add_parser("plot", help="learning curves, connections, importance, input connectivity (PNG)")
    pl.add_argument("model")
    pl.add_argument("--out", required=True, help="folder for the PNG files")
    pl.add_argument("--image-shape", type=_sizes, help="input image shape, e.g. 28,28 or 3,32,32")
    return p


# ---------------------------------------------------------------- settings


def _config_value(action: argparse.Action, key: str, value: Any) -> Any:
    """A value from the TOML file, converted and checked as its flag would be.
    ``key`` is the flag's name or its destination (``no_shuffle`` or ``shuffle``)."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise InvalidInputError(f"config: {key} must be true or false, got {value!r}")
        negated = key != action.dest and isinstance(action, argparse._StoreFalseAction)
        return not value if negated else value
    if action.type is _sizes and isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if isinstance(value, (list, dict, bool)):
        raise InvalidInputError(f"config: {key} cannot be {value!r}")
    try:
        converted = action.type(str(value)) if callable(action.type) else str(value)
    except (argparse.ArgumentTypeError, ValueError) as e:
        raise InvalidInputError(f"config: {key} = {value!r}: {e}") from None
    if action.choices is not None and converted not in action.choices:
        raise InvalidInputError(f"config: {key} must be one of {sorted(action.choices)}, got {value!r}")
    return converted


def read_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The settings of a TOML file; keys are flag names (``batch_size`` or
    ``batch-size``), at the top level or inside tables such as ``[model]``."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidInputError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise InvalidInputError(f"cannot read config file {path}: {e.strerror}") from None
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            flat[k.replace("-", "_")] = v
    actions: dict[str, argparse.Action] = {}
    for a in parser._actions:
        if a.option_strings and a.option_strings[0].startswith("--") and a.dest != "help":
            actions[a.option_strings[0][2:].replace("-", "_")] = a
            actions.setdefault(a.dest, a)
    unknown = sorted(set(flat) - set(actions) - {"config"})
    if unknown:
        raise InvalidInputError(f"{path}: unknown settings {unknown}; valid: {sorted(actions)}")
    return {actions[k].dest: _config_value(actions[k], k, v) for k, v in flat.items() if k != "config"}


def settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Defaults < preset < config file < flags."""
    given = {k: v for k, v in vars(args).items() if k != "command"}
    config = read_config(given["config"], parser) if "config" in given else {}
    chosen = {**config, **given}
    data = chosen.get("data") or ("file" if chosen.get("train") else DEFAULTS["data"])
    if chosen.get("train") and chosen.get("data"):
        raise InvalidInputError("give either --data or --train, not both")
    preset = PRESETS[data]
    if chosen.get("paper_settings"):
        if data not in PAPER:
            raise InvalidInputError(f"--paper-settings needs one of the paper's data sets: --data "
                                    f"{'|'.join(PAPER)}")
        preset = PAPER[data]
    return {**DEFAULTS, **preset, **chosen, "data": data}


def _train_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


# ---------------------------------------------------------------- data


def _label(text: Any) -> int | str:
    text = str(text)
    try:
        return int(text)
    except ValueError:
        return text


def load_data(s: dict[str, Any]) -> datasets.Split:
    """The split the settings name, not standardized."""
    if s.get("train"):
        return datasets.load_table(s["train"], s.get("test"), label=_label(s.get("label", -1)),
                                   test_fraction=s.get("test_fraction", 0.25), seed=s.get("seed", 0),
                                   standardized=False)
    if s["data"] == "synthetic":
        return datasets.synthetic(seed=s.get("seed", 0))
    loader, _ = datasets.DATASETS[s["data"]]
    if not s.get("data_dir"):
        s["data_dir"] = datasets.locate(s["data"])
    return loader(s["data_dir"], standardized=False)


def _data_record(s: dict[str, Any], split: datasets.Split) -> dict[str, Any]:
    """What a trained model remembers of its data, so that ``evaluate`` finds
    the same test split again and ``predict`` scales raw features."""
    record: dict[str, Any] = {"name": s["data"], "seed": s.get("seed", 0)}
    if s["data"] == "file":
        record.update(train=os.path.abspath(s["train"]), label=str(s.get("label", -1)),
                      test=os.path.abspath(s["test"]) if s.get("test") else None,
                      test_fraction=s.get("test_fraction", 0.25))
    elif s.get("data_dir"):
        record["path"] = os.path.abspath(s["data_dir"])
    if s["data"] != "synthetic":  # the built-in data come standardized
        mean, std = datasets.feature_scaling(split.X_train)
        record.update(mean=mean.tolist(), std=std.tolist())
    return record


def _scale(X: np.ndarray, data: dict[str, Any]) -> np.ndarray:
    if "mean" not in data:
        return np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(data["mean"]):
        raise InvalidInputError(f"the data have {X.shape[-1] if X.ndim else 0} features; the model "
                                f"was trained on {len(data['mean'])}")
    return ((X - np.asarray(data["mean"])) / np.asarray(data["std"])).astype(np.float32)


def _labels(split_classes: tuple | None, y: np.ndarray) -> np.ndarray:
    """A split's encoded labels as the data's own labels again."""
    return y if split_classes is None else np.asarray(split_classes)[y]


def _file_labels(y: np.ndarray) -> np.ndarray:
    """A table's label column (read as text) as numbers where they are numbers."""
    return datasets._numeric_if_possible(y) if y.dtype.kind in "USO" else y


def _evaluation_data(args: argparse.Namespace, data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The test features (scaled as in training) and labels ``evaluate`` uses:
    the files or data set named on the command line, else the test split of
    the data the model was trained on."""
    name = args.data or ("file" if args.train or args.test else data.get("name", "synthetic"))
    s: dict[str, Any] = {**DEFAULTS, "data": name, "seed": data.get("seed", 0)}
    if name == "file" and not (args.train or args.test):
        train = data.get("train")
        if not train or not os.path.exists(train):
            raise InvalidInputError(
                f"the model was trained on {train or 'a table it does not name'}, which is not there "
                "now; give the test data with --test FILE (and --label COLUMN)")
        s.update(train=train, test=data.get("test"), label=data.get("label", "-1"),
                 test_fraction=data.get("test_fraction", 0.25))
    elif name == data.get("name"):
        s["data_dir"] = data.get("path")
    for key in ("data_dir", "train", "test", "label", "test_fraction"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    if name == "file" and not args.train and args.test:
        X, y = datasets.read_table(args.test, _label(s["label"]))
        if y is None:
            raise InvalidInputError(f"{args.test} has no label column")
        y = _file_labels(y)
    else:
        split = load_data(s)
        X, y = split.X_test, _labels(split.classes, split.y_test)
    return (_scale(X, data) if name != "synthetic" else X), y


# ---------------------------------------------------------------- commands


def _recycling(s: dict[str, Any]) -> Any:
    from .recycling import ContinualBackprop, MidpointLoss, NeuronRecycling, ReDo

    common = {name: s[key] for key, name in (
        ("recycle_every", "every_steps"), ("recycle_reinit", "reinit"),
        ("recycle_outgoing", "outgoing"), ("recycle_immunity", "immunity"),
        ("recycle_interpolate", "interpolate_steps")) if key in s}
    kind = s["recycling"]
    strategies: list[Any] = []
    if kind in ("magnitude", "random", "largest"):
        extra = {"fraction": s["recycle_fraction"]} if "recycle_fraction" in s else {}
        strategies.append(NeuronRecycling(select=kind, **extra, **common))
    elif kind == "redo":
        strategies.append(ReDo(**({"tau": s["redo_tau"]} if "redo_tau" in s else {}), **common))
    elif kind == "cbp":
        extra = {k: s[key] for key, k in (("cbp_rate", "replacement_rate"),
                                          ("cbp_maturity", "maturity")) if key in s}
        strategies.append(ContinualBackprop(**extra, **common))
    if s.get("midpoint"):
        strategies.append(MidpointLoss(s["midpoint"]))
    return strategies or None


def _build_model(s: dict[str, Any], n_features: int, classes: Sequence[Any]) -> SparseMLP:
    activation = AllReLU(s["alpha"]) if s["activation"] == "all_relu" else s["activation"]
    sparsity = {"density": s["density"]} if s.get("density") else {"epsilon": s["epsilon"]}
    return SparseMLP([n_features, *s["hidden"], len(classes)], activation=activation, init=s["init"],
                     dropout=s["dropout"], seed=s["seed"], classes=classes, **sparsity)


def _check_outputs(save: str | None, out: str | None, rank: int) -> None:
    """Makes the --out folder and checks that --save can be written, before
    any data is read or any epoch trained."""
    if rank != 0:
        return
    if out:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            raise InvalidInputError(f"--out {out}: cannot make the folder ({e.strerror})") from None
        check_writable(os.path.join(out, "model.npz"), "--out's model file")
    if save:
        check_writable(save, "--save")


def _saved_progress(s: dict[str, Any], checkpoint: str | None) -> dict[str, Any] | None:
    """The metadata of the run saved in the checkpoint when this command
    resumes it; refuses a command that would replace another run's files."""
    if checkpoint and os.path.exists(checkpoint):
        if not s["resume"] and not s["overwrite"]:
            raise InvalidInputError(
                f"{checkpoint} holds {describe_run(checkpoint)}; a new run does not replace it: "
                "add --resume to continue that run, or --overwrite to start a new one in its place")
        if s["resume"]:
            meta = read_meta(checkpoint)
            fit = meta.get("config", {}).get("fit")
            return meta if isinstance(fit, dict) and "done" in fit else None
    elif s.get("out") and not s["overwrite"] and not s["resume"]:
        found = [n for n in ("model.npz", "metrics.jsonl") if os.path.exists(os.path.join(s["out"], n))]
        if found:
            raise InvalidInputError(f"{s['out']} holds another run's {' and '.join(found)}; add "
                                    "--overwrite to replace them, or choose another --out")
    return None


class _EpochEnds:
    """A fit callback that remembers where the last completed epoch ended
    (epoch, training step), so that an interruption can say how far the
    next epoch had gone."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def __call__(self, model: SparseMLP, record: dict[str, Any]) -> None:
        self.epoch, self.step = model.epochs_trained, model._net.run_state[2]


def _interrupted(model: SparseMLP, s: dict[str, Any], checkpoint: str | None, started: float,
                 outputs: list[str], ends: _EpochEnds, argv: Sequence[str], n_batches: int) -> int:
    """Ctrl-C during training: saves the model to the outputs, says which
    weights they hold, and prints the command that resumes the run."""
    def tell(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    done = model.epochs_trained
    batches = model._net.run_state[2] - ends.step - (done - ends.epoch) * n_batches
    tell(f"sparse-mlp: interrupted in epoch {done + 1} of {s['epochs']}, after {batches} of its "
         f"{n_batches} mini-batches" if batches > 0 else
         f"sparse-mlp: interrupted after epoch {done} of {s['epochs']}")
    saved, progress = None, None
    if checkpoint and os.path.exists(checkpoint) and (
            s["resume"] or os.stat(checkpoint).st_mtime >= started):  # this run's checkpoint
        try:
            saved = SparseMLP.load(checkpoint)
            progress = saved._config.pop("fit", None)
        except CheckpointError:
            saved = None
    if saved is not None and isinstance(progress, dict):
        which = f"the weights after epoch {progress['done']}, " + (
            "the last completed epoch" if progress["done"] == done else "the last checkpoint")
        source = saved
    else:
        saved = None
        which = f"the weights when it stopped: after epoch {done}" + (
            f" and {batches} mini-batches of epoch {done + 1}" if batches > 0 else "")
        source = model
    for path in outputs:
        source.save(path)
        tell(f"saved {path}: {which}")
    if saved is not None:
        command = ["sparse-mlp", *argv, *([] if "--resume" in argv else ["--resume"])]
        tell(f"resume with: {shlex.join(command)}")
    else:
        tell("this run cannot be resumed: it has no checkpoint (give --checkpoint FILE or --out DIR)")
    return 130


def train(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from . import parallel, set_num_threads
    from .topology import SET, ImportancePruning

    s = settings(args, parser)
    verbose = 0 if s["quiet"] else s["verbose"]
    if s.get("threads") and not s.get("parallel"):
        set_num_threads(s["threads"])
    rank = parallel._mpi().COMM_WORLD.Get_rank() if s.get("parallel") else 0
    out = s.get("out")
    checkpoint = s.get("checkpoint") or (os.path.join(out, "checkpoint.npz") if out else None)
    if s["resume"] and not checkpoint:
        raise InvalidInputError("--resume needs --checkpoint FILE or --out DIR (the run to continue)")
    _check_outputs(s.get("save"), out, rank)
    if checkpoint and rank == 0:
        check_writable(checkpoint, "the checkpoint")
    progress = _saved_progress(s, checkpoint) if not s.get("parallel") else None

    def say(text: str) -> None:
        if rank == 0 and verbose:
            print(text, flush=True)

    split = load_data(s)
    data_info = _data_record(s, split)
    X_train, X_test = _scale(split.X_train, data_info), _scale(split.X_test, data_info)
    classes = split.classes or tuple(range(int(max(split.y_train.max(), split.y_test.max())) + 1))
    y_train, y_test = _labels(split.classes, split.y_train), _labels(split.classes, split.y_test)
    model = _build_model(s, X_train.shape[1], classes)
    model._config["data"] = data_info
    say(f"data {s.get('train') or s['data']}: {X_train.shape[0]} train / {X_test.shape[0]} test "
        f"samples, {X_train.shape[1]} features, {len(classes)} classes")
    plan = f"training {s['epochs']} epochs" + (
        f" with {s['parallel'].upper()}-SGD" if s.get("parallel") else "")
    if progress is not None:
        progress, resumed = progress["config"]["fit"], progress
        plan = (f"resuming the run saved in {checkpoint} after epoch {progress['done']} of "
                f"{progress['plan']['epochs']}")
    say(f"model {'-'.join(map(str, model.sizes))}: {model.n_connections} connections; {plan}")
    pruning = (ImportancePruning(s["prune_start"], s["prune_every"], s["prune_percentile"],
                                 shrink=s["prune_shrink"], keep=s["prune_keep"])
               if s["prune"] else None)
    callbacks: list[Any] = []
    if out and rank == 0:
        atomic_write(os.path.join(out, "settings.json"), lambda f: f.write(json.dumps(
            {k: v for k, v in s.items() if k != "config"}, indent=2, default=str).encode()))
        callbacks.append(MetricsLogger(out))
    options = dict(
        epochs=s["epochs"], batch_size=s["batch_size"], learning_rate=s["learning_rate"],
        momentum=s["momentum"], weight_decay=s["weight_decay"],
        topology=SET(s["zeta"], s["set_every"]) if s["zeta"] > 0 else None, pruning=pruning,
        validation_data=(X_test, y_test), verbose=verbose if rank == 0 else 0,
        checkpoint=checkpoint, resume=s["resume"], overwrite=s["overwrite"],
    )
    outputs = [p for p in (s.get("save"), os.path.join(out, "model.npz") if out else None) if p]
    start, started = time.perf_counter(), time.time()
    if s.get("parallel"):
        if _recycling(s) is not None or not s["bias_decay"]:
            raise InvalidInputError("--recycling, --midpoint and --no-bias-decay do not combine with "
                                    "--parallel")
        trainer = parallel.WASAP(phase2_fraction=s["phase2_fraction"], sync=s["parallel"] == "wassp",
                                 threads=s.get("threads"))
        history = trainer.fit(model, X_train, y_train, nesterov=s["nesterov"], callbacks=callbacks,
                              **options)
    else:
        ends = (_EpochEnds(resumed["epochs_trained"], resumed["step"]) if progress is not None
                else _EpochEnds(model.epochs_trained, model._net.run_state[2]))
        try:
            history = model.fit(X_train, y_train, nesterov=s["nesterov"], shuffle=s["shuffle"],
                                bias_decay=s["bias_decay"],
                                recycling=_recycling(s), callbacks=[*callbacks, ends],
                                checkpoint_every=s["checkpoint_every"], **options)
        except KeyboardInterrupt:
            return _interrupted(model, s, checkpoint, started, outputs, ends, argv,
                                -(-X_train.shape[0] // s["batch_size"]))
    model._config["data"] = data_info  # a resumed model keeps it too
    elapsed = time.perf_counter() - start
    if progress is not None and progress.get("finished"):
        say(f"nothing to train: the run saved in {checkpoint} had finished all "
            f"{progress['plan']['epochs']} epochs")
    scored = [r for r in (history or model.history) if "val_accuracy" in r]
    if rank == 0 and scored:
        best = max(r["val_accuracy"] for r in scored)
        print(f"final test accuracy {scored[-1]['val_accuracy']:.4f} (best {best:.4f}), "
              f"{model.n_connections} connections, {elapsed:.1f} s", flush=True)
    if rank == 0:
        for path in outputs:
            model.save(path)
            say(f"saved to {path}")
    return 0


def evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    model = SparseMLP.load(args.model)
    X, y = _evaluation_data(args, model._config.get("data", {}))
    result = model.evaluate(X, y)
    result["samples"] = int(X.shape[0])
    print(json.dumps(result) if args.json else
          f"test loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}  ({X.shape[0]} samples)")
    return 0


def predict(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    model = SparseMLP.load(args.model)
    if args.output:
        check_writable(args.output, "--output")
    X, _ = datasets.read_table(args.input, _label(args.label) if args.label is not None else None)
    X = _scale(np.asarray(X, dtype=np.float64), model._config.get("data", {}))
    names = [labels.text(c) for c in model._output_labels()]
    if args.proba:
        result = model.predict_proba(X)
        rows = [[f"{v:.6g}" for v in row] for row in result]
        header = names
    else:
        result = model.predict(X)
        rows = [[labels.text(v)] for v in result]
        header = ["prediction"]
    if args.output and args.output.endswith(".npy"):
        atomic_write(args.output, lambda f: np.save(f, result, allow_pickle=False))
        return 0
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if args.output or args.proba:
        writer.writerow(header)
    writer.writerows(rows)
    if args.output:
        atomic_write(args.output, lambda f: f.write(text.getvalue().encode()))
    else:
        sys.stdout.write(text.getvalue())
    return 0


def bench(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from . import get_num_threads, set_num_threads

    if args.threads:
        set_num_threads(args.threads)
    sizes = args.sizes
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.samples, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], size=args.samples)
    t0 = time.perf_counter()
    model = SparseMLP(sizes, epsilon=args.epsilon, seed=0)
    init = time.perf_counter() - t0
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    train = sorted(r["train_seconds"] for r in history)
    median = train[len(train) // 2]
    t0 = time.perf_counter()
    model.predict(X)
    infer = time.perf_counter() - t0
    useful = 6.0 * model.n_connections * args.samples / median / 1e9
    dense = np.ones((1024, 1024), dtype=np.float32)
    t0 = time.perf_counter()
    for _ in range(10):
        dense @ dense
    gemm = 10 * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9
    result = {"sizes": sizes, "connections": model.n_connections, "threads": get_num_threads(),
              "init_seconds": init, "epoch_seconds": median, "samples_per_second": args.samples / median,
              "useful_gflops": useful, "numpy_gemm_gflops": gemm, "inference_seconds": infer,
              "memory_bytes": model.memory_bytes}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model {'-'.join(map(str, sizes))}: {model.n_connections} connections, "
              f"{model.memory_bytes / 1e6:.1f} MB, {get_num_threads()} threads")
        print(f"training epoch of {args.samples} samples (median of {args.epochs}): {median:.3f} s, "
              f"{args.samples / median:,.0f} samples/s, {useful:.1f} GFLOP/s of sparse work")
        print(f"inference: {infer:.3f} s; numpy dense GEMM here: {gemm:.0f} GFLOP/s "
              f"(sparse work at {useful / gemm:.1%} of its rate)")
    return 0


def info(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    model = SparseMLP.load(args.model)
    layers = [{"index": layer.index, "shape": list(layer.shape), "nnz": layer.nnz,
               "density": layer.density} for layer in model.layers]
    scored = [r for r in model.history if "val_accuracy" in r]
    result = {"sizes": model.sizes, "connections": model.n_connections,
              "memory_bytes": model.memory_bytes, "layers": layers,
              "epochs_trained": model.epochs_trained, "seed": model.seed,
              "data": model._config.get("data", {}).get("name")}
    if scored:
        result["best_val_accuracy"] = max(r["val_accuracy"] for r in scored)
        result["last_val_accuracy"] = scored[-1]["val_accuracy"]
    checkpoint = model._config.get("fit")
    if checkpoint:
        result["checkpoint"] = {"done": checkpoint["done"], "epochs": checkpoint["plan"]["epochs"]}
    batch = args.batch_size or (checkpoint or {}).get("plan", {}).get("batch_size", 32)
    estimate = model.memory_estimate(batch)
    result["training_memory"] = {"batch_size": batch, **estimate,
                                 "available": available_bytes()}
    if args.json:
        print(json.dumps(result))
        return 0
    print(repr(model))
    print(model.summary())
    if model.history:
        print(f"trained {model.epochs_trained} epochs; last: {format_record(model.history[-1])}")
    if scored:
        print(f"best validation accuracy {result['best_val_accuracy']:.4f}")
    if checkpoint:
        print(f"checkpoint of a run at epoch {checkpoint['done']} of {checkpoint['plan']['epochs']}")
    available = result["training_memory"]["available"]
    print(f"training at batch {batch} needs {format_bytes(estimate['training_total'])} "
          f"({format_bytes(estimate['parameters'])} parameters, "
          f"{format_bytes(estimate['training_buffers'])} buffers, "
          f"{format_bytes(estimate['topology_change'])} for SET); inference "
          f"{format_bytes(estimate['inference_total'])}"
          + (f"; {format_bytes(available)} available" if available is not None else ""))
    return 0


def plot(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from .plots import plot_run

    model = SparseMLP.load(args.model)
    shape = tuple(args.image_shape) if args.image_shape else IMAGE_SHAPES.get(
        model._config.get("data", {}).get("name", ""))
    for path in plot_run(model, args.out, image_shape=shape):
        print(path)
    return 0


COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "bench": bench, "info": info,
            "plot": plot}


def _logging(quiet: bool) -> logging.Handler:
    """The package's warnings as one ``sparse-mlp: warning:`` line each on
    stderr (none with --quiet); returns the handler, removed afterwards."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("sparse-mlp: %(levelname)s: %(message)s"))
    handler.setLevel(logging.ERROR if quiet else logging.WARNING)
    logger = logging.getLogger("sparse_mlp")
    logger.addHandler(handler)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    handler = _logging(quiet)
    logger = logging.getLogger("sparse_mlp")
    propagate, logger.propagate = logger.propagate, False
    try:
        command = COMMANDS[args.command]
        return command(args, _train_parser(parser) if args.command == "train" else parser, argv)
    except SparseMLPError as e:
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written (permissions, a full disk)
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparse-mlp: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: one line, not a traceback
        if os.environ.get("SPARSE_MLP_DEBUG"):
            raise
        print(f"sparse-mlp: internal error: {type(e).__name__}: {e} (please report it; run with "
              "SPARSE_MLP_DEBUG=1 to see where it happened)", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
