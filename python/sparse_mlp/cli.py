"""The ``sparse-mlp`` command line (also ``python -m sparse_mlp``).

Commands: ``train``, ``evaluate``, ``predict``, ``bench``, ``info``, ``plot``.
``train`` settings come, lowest priority first, from the built-in defaults,
the data set's preset (SPEC §8), a TOML file (``--config``) and the flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import datasets
from .activations import AllReLU
from .checkpoint import check_writable
from .errors import InvalidInputError, SparseMLPError
from .memory import available_bytes, format_bytes
from .metrics import MetricsLogger
from .model import SparseMLP, format_record

# Settings of the paper's runs per data set (SPEC §8); "file" is any table.
PRESETS: dict[str, dict[str, Any]] = {
    "synthetic": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                      batch_size=128, learning_rate=0.05, epochs=20),
    "madelon": dict(hidden=[400, 100, 400], epsilon=10.0, init="normal", alpha=0.5,
                    batch_size=32, learning_rate=0.01, epochs=500),
    "fashion_mnist": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                          batch_size=128, learning_rate=0.01, epochs=500),
    "cifar10": dict(hidden=[4000, 1000, 4000], epsilon=20.0, init="he_uniform", alpha=0.75,
                    batch_size=128, learning_rate=0.01, epochs=500),
    "higgs": dict(hidden=[1000, 1000, 1000], epsilon=10.0, init="xavier", alpha=0.05,
                  batch_size=128, learning_rate=0.01, epochs=500),
    "file": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                 batch_size=32, learning_rate=0.01, epochs=100),
}
DEFAULTS: dict[str, Any] = dict(
    data="synthetic", label="-1", test_fraction=0.25, momentum=0.9, weight_decay=2e-4,
    nesterov=False, shuffle=True, dropout=0.3, activation="all_relu", zeta=0.3, set_every=1,
    prune=False, prune_start=200, prune_every=20, prune_percentile=10.0, prune_keep_width=False,
    recycling="none", seed=0, phase2_fraction=0.3, checkpoint_every=1, resume=False, quiet=False,
)
PRESETS["mnist"] = PRESETS["fashion_mnist"]  # same shape; the paper ran Fashion-MNIST
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
        p.add_argument("--data-dir", help="the data set's folder or file (default: $SPARSE_MLP_DATA_DIR)")
    p.add_argument("--train", help="training data file: .csv/.tsv/.txt[.gz], .npy, .npz, .svm")
    p.add_argument("--test", help="test data file (default: --test-fraction of --train)")
    p.add_argument("--label", help="label column of a table: index or header name (default: last)")
    p.add_argument("--test-fraction", type=float, help="held-out share without --test (default 0.25)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparse-mlp", description="Truly sparse MLP training on CPUs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a sparse MLP and report its accuracy",
                       argument_default=argparse.SUPPRESS,
                       description="Settings: built-in defaults < the data set's preset < "
                                   "--config file < flags.")
    t.add_argument("--config", help="TOML file of settings named like the flags (e.g. hidden = [400, 100])")
    _data_arguments(t)
    m = t.add_argument_group("model")
    m.add_argument("--hidden", type=_sizes, help="hidden layer sizes, e.g. 1000,1000,1000")
    m.add_argument("--epsilon", type=float, help="Erdős–Rényi sparsity ε")
    m.add_argument("--density", type=float, help="a global density instead of ε (ERK spread)")
    m.add_argument("--init", choices=["he_uniform", "xavier", "normal"])
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
    f.add_argument("--no-shuffle", dest="shuffle", action="store_false")
    f.add_argument("--zeta", type=float, help="SET fraction (0 disables SET; default 0.3)")
    f.add_argument("--set-every", type=int, help="SET every this many epochs")
    f.add_argument("--prune", action="store_true", help="Importance Pruning")
    f.add_argument("--prune-start", type=int)
    f.add_argument("--prune-every", type=int)
    f.add_argument("--prune-percentile", type=float)
    f.add_argument("--prune-keep-width", action="store_true",
                   help="empty pruned neurons instead of removing them (shrink=False)")
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
    o.add_argument("--checkpoint", help="checkpoint file, written every --checkpoint-every epochs")
    o.add_argument("--checkpoint-every", type=int)
    o.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    o.add_argument("--quiet", action="store_true", help="no progress output")
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
    return {**DEFAULTS, **PRESETS[data], **chosen, "data": data}


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
    if s.get("data_dir") is None and not os.environ.get("SPARSE_MLP_DATA_DIR"):
        raise InvalidInputError(f"--data {s['data']} needs its files: --data-dir DIR "
                                f"({datasets.DATASETS[s['data']][1]})")
    loader, _ = datasets.DATASETS[s["data"]]
    path = s.get("data_dir") or os.environ["SPARSE_MLP_DATA_DIR"]
    return loader(path, standardized=False)


def _scaling(X: np.ndarray) -> dict[str, list[float]]:
    mean, std = datasets.feature_scaling(X)
    return {"mean": mean.tolist(), "std": std.tolist()}


def _scale(X: np.ndarray, data: dict[str, Any]) -> np.ndarray:
    if "mean" not in data:
        return np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(data["mean"]):
        raise InvalidInputError(f"the data have {X.shape[-1] if X.ndim else 0} features; the model "
                                f"was trained on {len(data['mean'])}")
    return ((X - np.asarray(data["mean"])) / np.asarray(data["std"])).astype(np.float32)


def _encode_with(model: SparseMLP, y: np.ndarray) -> np.ndarray:
    """Labels of a file as the model's class indices (the classes it was trained with)."""
    if y.dtype.kind in "USO":
        y = datasets._numeric_if_possible(y)
    classes = model._config.get("data", {}).get("classes")
    if classes is None:
        return y  # already class indices; evaluate() checks the range
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[v.item() if isinstance(v, np.generic) else v] for v in y], dtype=np.int64)
    except KeyError as e:
        raise InvalidInputError(f"label {e.args[0]!r} is not one of the model's classes {classes}") from None


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


def _build_model(s: dict[str, Any], n_features: int, n_classes: int) -> SparseMLP:
    activation = AllReLU(s["alpha"]) if s["activation"] == "all_relu" else s["activation"]
    sparsity = {"density": s["density"]} if s.get("density") else {"epsilon": s["epsilon"]}
    return SparseMLP([n_features, *s["hidden"], n_classes], activation=activation, init=s["init"],
                     dropout=s["dropout"], seed=s["seed"], **sparsity)


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


def train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from . import parallel, set_num_threads
    from .topology import SET, ImportancePruning

    s = settings(args, parser)
    if s.get("threads") and not s.get("parallel"):
        set_num_threads(s["threads"])
    rank = parallel._mpi().COMM_WORLD.Get_rank() if s.get("parallel") else 0
    out = s.get("out")
    _check_outputs(s.get("save"), out, rank)

    def say(text: str) -> None:
        if rank == 0 and not s["quiet"]:
            print(text, flush=True)

    split = load_data(s)
    data_info: dict[str, Any] = {"name": s["data"], "classes": split.classes}
    if s.get("data_dir"):  # where `evaluate` finds the data by default
        data_info["path"] = os.path.abspath(s["data_dir"])
    if s["data"] != "synthetic":  # the built-in data come standardized
        data_info.update(_scaling(split.X_train))
    X_train, X_test = _scale(split.X_train, data_info), _scale(split.X_test, data_info)
    n_classes = int(max(split.y_train.max(), split.y_test.max())) + 1
    model = _build_model(s, X_train.shape[1], n_classes)
    model._config["data"] = data_info
    say(f"data {s.get('train') or s['data']}: {X_train.shape[0]} train / {X_test.shape[0]} test "
        f"samples, {X_train.shape[1]} features, {n_classes} classes")
    say(f"model {'-'.join(map(str, model.sizes))}: {model.n_connections} connections; training "
        f"{s['epochs']} epochs" + (f" with {s['parallel'].upper()}-SGD" if s.get("parallel") else ""))
    pruning = (ImportancePruning(s["prune_start"], s["prune_every"], s["prune_percentile"],
                                 shrink=not s["prune_keep_width"]) if s["prune"] else None)
    callbacks = []
    if out and rank == 0:
        with open(os.path.join(out, "settings.json"), "w") as f:
            json.dump({k: v for k, v in s.items() if k != "config"}, f, indent=2, default=str)
        callbacks.append(MetricsLogger(out))
    options = dict(
        epochs=s["epochs"], batch_size=s["batch_size"], learning_rate=s["learning_rate"],
        momentum=s["momentum"], weight_decay=s["weight_decay"],
        topology=SET(s["zeta"], s["set_every"]) if s["zeta"] > 0 else None, pruning=pruning,
        validation_data=(X_test, split.y_test), verbose=0 if s["quiet"] or rank else 1,
    )
    start = time.perf_counter()
    if s.get("parallel"):
        if _recycling(s) is not None:
            raise InvalidInputError("--recycling and --midpoint do not combine with --parallel")
        trainer = parallel.WASAP(phase2_fraction=s["phase2_fraction"], sync=s["parallel"] == "wassp",
                                 threads=s.get("threads"))
        history = trainer.fit(model, X_train, split.y_train, checkpoint=s.get("checkpoint"),
                              resume=s["resume"], nesterov=s["nesterov"], callbacks=callbacks,
                              **options)
    else:
        if s["resume"] and not s.get("checkpoint"):
            raise InvalidInputError("--resume needs --checkpoint FILE")
        history = model.fit(X_train, split.y_train, nesterov=s["nesterov"], shuffle=s["shuffle"],
                            recycling=_recycling(s), callbacks=callbacks,
                            checkpoint=s.get("checkpoint"), checkpoint_every=s["checkpoint_every"],
                            resume=s["resume"], **options)
    model._config["data"] = data_info  # a resumed model keeps it too
    elapsed = time.perf_counter() - start
    best = max(r["val_accuracy"] for r in history if "val_accuracy" in r)
    say(f"final test accuracy {history[-1]['val_accuracy']:.4f} (best {best:.4f}), "
        f"{model.n_connections} connections, {elapsed:.1f} s")
    if rank == 0:
        for path in [s.get("save"), os.path.join(out, "model.npz") if out else None]:
            if path:
                model.save(path)
                say(f"saved to {path}")
    return 0


def evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    model = SparseMLP.load(args.model)
    data_info = model._config.get("data", {})
    s = {**DEFAULTS, **{k: v for k, v in vars(args).items() if v is not None}}
    s["data"] = args.data or ("file" if args.train or args.test else data_info.get("name", "synthetic"))
    if s["data"] == data_info.get("name") and not args.data_dir:
        s["data_dir"] = data_info.get("path")
    if s["data"] == "file" and not args.train:
        X, y = datasets.read_table(args.test, _label(s["label"]))
    else:
        split = load_data(s)
        X, y = split.X_test, split.y_test
        if split.classes is not None:
            y = np.asarray(split.classes, dtype=object)[y]
    X = _scale(X, data_info) if s["data"] != "synthetic" else X
    result = model.evaluate(X, _encode_with(model, np.asarray(y)))
    result["samples"] = int(X.shape[0])
    print(json.dumps(result) if args.json else
          f"test loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}  ({X.shape[0]} samples)")
    return 0


def predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    model = SparseMLP.load(args.model)
    data_info = model._config.get("data", {})
    X, _ = datasets.read_table(args.input, _label(args.label) if args.label is not None else None)
    X = _scale(np.asarray(X, dtype=np.float64), data_info)
    if args.proba:
        result = model.predict_proba(X)
    else:
        result = model.predict(X)
        if data_info.get("classes") is not None:
            result = np.asarray(data_info["classes"])[result]
    if args.output and args.output.endswith(".npy"):
        np.save(args.output, result)
    else:
        lines = ["\n".join(",".join(f"{v:.6g}" for v in row) for row in result) if args.proba
                 else "\n".join(str(v) for v in result)]
        header = (",".join(f"p{k}" for k in range(model.n_classes)) if args.proba else "prediction")
        if args.output:
            with open(args.output, "w") as f:
                f.write(header + "\n" + lines[0] + "\n")
        else:
            print(lines[0])
    return 0


def bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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


def info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
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
    print(f"training at batch {batch} needs {format_bytes(estimate['total'])} "
          f"({format_bytes(estimate['parameters'])} parameters, "
          f"{format_bytes(estimate['training_buffers'])} buffers)"
          + (f"; {format_bytes(available)} available" if available is not None else ""))
    return 0


def plot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .plots import plot_run

    model = SparseMLP.load(args.model)
    shape = tuple(args.image_shape) if args.image_shape else IMAGE_SHAPES.get(
        model._config.get("data", {}).get("name", ""))
    for path in plot_run(model, args.out, image_shape=shape):
        print(path)
    return 0


COMMANDS = {"train": train, "evaluate": evaluate, "predict": predict, "bench": bench, "info": info,
            "plot": plot}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args, _train_parser(parser) if args.command == "train" else parser)
    except SparseMLPError as e:
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written (permissions, a full disk)
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparse-mlp: interrupted", file=sys.stderr)
        return 130
