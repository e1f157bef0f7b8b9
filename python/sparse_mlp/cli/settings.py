"""The ``train`` command's settings: the flags, the TOML files that hold them,
the presets per data set, and the order they override one another."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import _core, datasets, optimizers, schedules
from ..activations import ACTIVATION_NAMES
from ..errors import InvalidInputError
from ..training.options import FitOptions

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
    "madelon": {}, "cifar10": {}, "higgs": {},
    # η 0.05 reached 90.2 % by epoch 100 where the paper's 0.01 reached 88.3;
    # the cosine schedule then lowers it to 0 over the run's epochs
    "fashion_mnist": dict(learning_rate=0.05, schedule="cosine"),
}
PRESETS: dict[str, dict[str, Any]] = {
    **{name: {**PAPER[name], **RECIPES[name]} for name in PAPER},
    "synthetic": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                      batch_size=128, learning_rate=0.05, epochs=20),
    "file": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                 batch_size=32, learning_rate=0.01, epochs=100),
}
# The command line's defaults: the training options' own (FitOptions), then
# its settings of data, model and output.
DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in FitOptions.defaults().items()
       if k in ("momentum", "weight_decay", "nesterov", "bias_decay", "shuffle", "checkpoint_every",
                "resume", "overwrite", "verbose")},
    **dict(data="synthetic", label="-1", test_fraction=0.25, dropout=0.3, activation="all_relu",
           topology="set", zeta=0.3, set_every=1, prune=False, prune_start=200, prune_every=10,
           prune_percentile=None,
           prune_keep=None, prune_shrink=False, recycling="none", seed=0, phase2_fraction=0.3,
           transport="float32", overlap=False, timeout=600.0,
           quiet=False, paper_settings=False, optimizer="sgd", schedule="constant",
           final_learning_rate=0.0, schedule_warmup=0, schedule_factor=None, schedule_every=30,
           schedule_patience=10, monitor="val_loss", early_stopping=None, restore_best=False,
           validation_fraction=0.1, class_weight=None, precision="float32"),
}
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


def _whole(least: int, what: str) -> Any:
    """An argparse type: an integer of at least ``least``."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = least - 1
        if n < least:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return n
    return parse


_count = _whole(0, "a whole number >= 0")
_positive = _whole(1, "a positive integer")


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
    m.add_argument("--init", choices=list(_core.NAMES["init"]),
                   help="weight distribution; the *_sparse ones scale by a neuron's real fan-in")
    m.add_argument("--activation", choices=list(ACTIVATION_NAMES))
    m.add_argument("--alpha", type=float, help="All-ReLU slope")
    m.add_argument("--dropout", type=float)
    m.add_argument("--precision", choices=["float32", "bfloat16"],
                   help="what activations and errors are stored as (weights stay float32)")
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
    f.add_argument("--topology", choices=["set", "rigl"],
                   help="how the topology evolves: set (random regrowth after each epoch, default) or "
                        "rigl (regrowth where the gradient is largest, every --rigl-every steps)")
    f.add_argument("--zeta", type=float,
                   help="fraction of each layer's connections pruned and regrown (0: a fixed topology; "
                        "default 0.3)")
    f.add_argument("--set-every", type=int, help="SET every this many epochs")
    f.add_argument("--rigl-every", type=int, help="RigL: training steps between updates (default 100)")
    f.add_argument("--rigl-stop", type=int,
                   help="RigL: the step at which zeta's cosine decay reaches 0 (default: no decay)")
    f.add_argument("--rigl-candidates", type=float,
                   help="RigL: candidates drawn per connection to grow (default 4)")
    f.add_argument("--rigl-accumulate", type=int,
                   help="RigL: mini-batches whose gradients an update ranks by (default 1)")
    f.add_argument("--rigl-mode", choices=["candidates", "exact"],
                   help="RigL: rank drawn candidates (default) or every missing connection")
    f.add_argument("--rigl-init", choices=["zero", "gradient"],
                   help="RigL: grown weights start at zero (default) or at -learning rate x gradient")
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
    f.add_argument("--optimizer", choices=list(optimizers.NAMES),
                   help="sgd (momentum SGD, default), adam or adamw; adam's default rate is 1e-3")
    f.add_argument("--schedule", choices=["constant", "cosine", "step", "plateau", "invscaling"],
                   help="learning-rate schedule (default constant)")
    f.add_argument("--final-learning-rate", type=float, help="cosine: the rate at the end (default 0)")
    f.add_argument("--schedule-warmup", type=_count, help="cosine: epochs of linear warm-up")
    f.add_argument("--schedule-factor", type=float,
                   help="step and plateau: the factor the rate is multiplied by (default 0.1)")
    f.add_argument("--schedule-every", type=_positive, help="step: epochs between two steps (default 30)")
    f.add_argument("--schedule-patience", type=_count,
                   help="plateau: epochs without improvement before the rate drops (default 10)")
    f.add_argument("--monitor", help="what --early-stopping and the plateau schedule watch "
                                     "(default val_loss; val_accuracy, loss, ...)")
    f.add_argument("--early-stopping", type=_count, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without improvement of --monitor on a validation "
                        "split held out of the training data (--validation-fraction)")
    f.add_argument("--restore-best", action="store_true",
                   help="with --early-stopping: end with the best epoch's model")
    f.add_argument("--validation-fraction", type=float,
                   help="share of the training data held out for --early-stopping and the plateau "
                        "schedule (default 0.1)")
    f.add_argument("--class-weight", choices=["balanced"],
                   help="weigh each sample's loss by the inverse frequency of its class")
    f.add_argument("--threads", type=int, help="worker threads (default: all cores)")
    r = t.add_argument_group("neuron recycling")
    r.add_argument("--recycling", choices=["none", "magnitude", "random", "largest", "redo", "cbp"])
    r.add_argument("--recycle-every", type=int, help="training steps between events")
    r.add_argument("--recycle-fraction", type=float,
                   help="share of neurons per event (magnitude/random/largest)")
    r.add_argument("--recycle-reinit", choices=list(_core.NAMES["reinit"]))
    r.add_argument("--recycle-outgoing", choices=list(_core.NAMES["outgoing"]))
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
    o.add_argument("--tensorboard", metavar="DIR",
                   help="write TensorBoard logs there (needs the tensorboard extra: tensorboardX)")
    par = t.add_argument_group("several processes")
    par.add_argument("--parallel", choices=["wasap", "wassp"],
                     help="data-parallel training over MPI; start with mpiexec -n K+1 sparse-mlp train ...")
    par.add_argument("--phase2-fraction", type=float,
                     help="with --parallel: share of the epochs trained locally, then averaged")
    par.add_argument("--transport", choices=["float32", "bfloat16"],
                     help="with --parallel: how gradients and values travel (bfloat16: half the bytes)")
    par.add_argument("--overlap", action=argparse.BooleanOptionalAction,
                     help="with --parallel: workers compute while their messages travel, one "
                          "more step stale (default: off)")
    par.add_argument("--timeout", type=float,
                     help="with --parallel: seconds a rank waits for a message before it aborts the "
                          "job (default 600)")

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
    b.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="what activations and errors are stored as")
    b.add_argument("--profile", action="store_true",
                   help="also time each part of the training step (a table of where the epoch goes)")
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


def _config_value(action: argparse.Action, key: str, value: Any) -> Any:
    """A value from the TOML file, converted and checked as its flag would be.
    ``key`` is the flag's name or its destination (``no_shuffle`` or ``shuffle``)."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                           argparse.BooleanOptionalAction)):
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
    optimizer = chosen.get("optimizer", DEFAULTS["optimizer"])
    if "learning_rate" not in chosen:  # the presets' rates are SGD's
        preset = {**preset, "learning_rate": optimizers.optimizer(optimizer).default_learning_rate
                  if optimizer != "sgd" else preset["learning_rate"]}
    return {**DEFAULTS, **preset, **chosen, "data": data}


def schedule(s: dict[str, Any]) -> Any:
    """The learning rate the settings ask for: a number, or a schedule
    starting from it."""
    rate, kind = s["learning_rate"], s["schedule"]
    factor = {} if s["schedule_factor"] is None else {"factor": s["schedule_factor"]}
    if kind == "cosine":
        return schedules.Cosine(rate, s["final_learning_rate"], s["schedule_warmup"])
    if kind == "step":
        return schedules.Step(rate, every=s["schedule_every"], **factor)
    if kind == "plateau":
        return schedules.ReduceOnPlateau(rate, s["monitor"], patience=s["schedule_patience"], **factor)
    if kind == "invscaling":
        return schedules.InvScaling(rate)
    return rate


def train_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]
