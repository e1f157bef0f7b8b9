"""The ``sparse-mlp`` command line (also ``python -m sparse_mlp``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from . import datasets
from .activations import AllReLU
from .errors import SparseMLPError
from .model import SparseMLP
from .topology import SET, ImportancePruning

# Settings of the paper's runs (SPEC §8) and of the built-in default.
PRESETS = {
    "synthetic": dict(hidden=[1000, 1000, 1000], epsilon=20.0, init="he_uniform", alpha=0.6,
                      batch_size=128, learning_rate=0.05, epochs=20),
    "madelon": dict(hidden=[400, 100, 400], epsilon=10.0, init="normal", alpha=0.5,
                    batch_size=32, learning_rate=0.01, epochs=500),
}


def _sizes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparse-mlp", description="Truly sparse MLP training.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a sparse MLP and report its accuracy")
    t.add_argument("--data", choices=sorted(PRESETS), default="synthetic",
                   help="data set (default: synthetic, built in; madelon needs --data-dir)")
    t.add_argument("--data-dir", help="directory holding the data set's files")
    t.add_argument("--hidden", type=_sizes, help="hidden layer sizes, e.g. 1000,1000,1000")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--momentum", type=float, default=0.9)
    t.add_argument("--weight-decay", type=float, default=2e-4)
    t.add_argument("--epsilon", type=float)
    t.add_argument("--init", choices=["he_uniform", "xavier", "normal"])
    t.add_argument("--alpha", type=float, help="All-ReLU slope")
    t.add_argument("--activation", choices=["all_relu", "relu", "tanh", "sigmoid"],
                   default="all_relu")
    t.add_argument("--dropout", type=float, default=0.3)
    t.add_argument("--zeta", type=float, default=0.3, help="SET fraction (0 disables SET)")
    t.add_argument("--prune", action="store_true", help="Importance Pruning")
    t.add_argument("--prune-start", type=int, default=200)
    t.add_argument("--prune-every", type=int, default=20)
    t.add_argument("--prune-percentile", type=float, default=10.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="worker threads (default: all cores)")
    t.add_argument("--save", help="write the trained model to this file")
    t.add_argument("--parallel", choices=["wasap", "wassp"],
                   help="data-parallel training over MPI; start with mpiexec -n K+1 sparse-mlp train ...")
    t.add_argument("--phase2-fraction", type=float, default=0.3,
                   help="with --parallel: share of the epochs trained locally, then averaged")
    t.add_argument("--checkpoint", help="with --parallel: the server's checkpoint file")
    t.add_argument("--resume", action="store_true", help="with --parallel: continue from --checkpoint")
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")

    i = sub.add_parser("info", help="summarize a saved model")
    i.add_argument("model")
    return p


def _load(args: argparse.Namespace) -> datasets.Split:
    if args.data == "synthetic":
        return datasets.synthetic(seed=args.seed)
    data_dir = args.data_dir or os.environ.get("SPARSE_MLP_DATA_DIR")
    if not data_dir:
        raise SparseMLPError("--data madelon needs --data-dir DIR (the folder with madelon_train.data)")
    return datasets.load_madelon(data_dir)


def train(args: argparse.Namespace) -> int:
    from . import parallel, set_num_threads

    if args.threads and not args.parallel:
        set_num_threads(args.threads)
    rank = 0
    if args.parallel:
        rank = parallel._mpi().COMM_WORLD.Get_rank()
    elif args.checkpoint or args.resume:
        raise SparseMLPError("--checkpoint and --resume go with --parallel; use --save otherwise")

    def say(text: str) -> None:
        if rank == 0:
            print(text, flush=True)

    preset = PRESETS[args.data]
    data = _load(args)
    hidden = args.hidden or preset["hidden"]
    sizes = [data.X_train.shape[1], *hidden, int(max(data.y_train.max(), data.y_test.max())) + 1]
    activation = (AllReLU(args.alpha if args.alpha is not None else preset["alpha"])
                  if args.activation == "all_relu" else args.activation)
    model = SparseMLP(sizes, activation=activation, epsilon=args.epsilon or preset["epsilon"],
                      init=args.init or preset["init"], dropout=args.dropout, seed=args.seed)
    epochs = args.epochs or preset["epochs"]
    say(f"data {args.data}: {data.X_train.shape[0]} train / {data.X_test.shape[0]} test "
        f"samples, {sizes[0]} features, {sizes[-1]} classes")
    say(f"model {'-'.join(map(str, sizes))}: {model.n_connections} connections; "
        f"training {epochs} epochs" + (f" with {args.parallel.upper()}-SGD" if args.parallel else ""))
    pruning = (ImportancePruning(args.prune_start, args.prune_every, args.prune_percentile)
               if args.prune else None)
    options = dict(
        epochs=epochs, batch_size=args.batch_size or preset["batch_size"],
        learning_rate=args.learning_rate or preset["learning_rate"],
        momentum=args.momentum, weight_decay=args.weight_decay,
        topology=SET(args.zeta) if args.zeta > 0 else None, pruning=pruning,
        validation_data=(data.X_test, data.y_test), verbose=0 if args.quiet or rank else 1,
    )
    start = time.perf_counter()
    if args.parallel:
        trainer = parallel.WASAP(phase2_fraction=args.phase2_fraction,
                                 sync=args.parallel == "wassp", threads=args.threads)
        history = trainer.fit(model, data.X_train, data.y_train, checkpoint=args.checkpoint,
                              resume=args.resume, **options)
    else:
        history = model.fit(data.X_train, data.y_train, **options)
    elapsed = time.perf_counter() - start
    best = max(r["val_accuracy"] for r in history if "val_accuracy" in r)
    say(f"final test accuracy {history[-1]['val_accuracy']:.4f} (best {best:.4f}), "
        f"{model.n_connections} connections, {elapsed:.1f} s")
    if args.save and rank == 0:
        model.save(args.save)
        say(f"saved to {args.save}")
    return 0


def info(args: argparse.Namespace) -> int:
    model = SparseMLP.load(args.model)
    print(repr(model))
    print(model.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": train, "info": info}[args.command](args)
    except SparseMLPError as e:
        print(f"sparse-mlp: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparse-mlp: interrupted", file=sys.stderr)
        return 130
