"""``sparse-mlp train``: a run from the settings, with its files (the run
folder, the checkpoint, the saved model) never replacing another run's,
and Ctrl-C leaving the last completed epoch and the command that resumes."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core, archive, parallel
from ..activations import AllReLU
from ..callbacks import EarlyStopping, TensorBoard
from ..errors import CheckpointError, InvalidInputError
from ..files import atomic_write, check_writable
from ..metrics import MetricsLogger
from ..model import SparseMLP
from ..pruning import ImportancePruning
from ..recycling import ContinualBackprop, MidpointLoss, NeuronRecycling, ReDo
from ..topology import SET, RigL
from ..training import loop
from ..training.options import FitOptions
from . import data as cli_data
from .settings import schedule, settings


def _topology(s: dict[str, Any]) -> Any:
    """SET or RigL as the settings ask (zeta 0: a fixed topology)."""
    if s["zeta"] == 0:
        return None
    if s["topology"] == "rigl":
        return RigL(s["zeta"], **{name: s[key] for key, name in (
            ("rigl_every", "every_steps"), ("rigl_stop", "stop_step"), ("rigl_candidates", "candidates"),
            ("rigl_accumulate", "accumulate"), ("rigl_mode", "mode"), ("rigl_init", "init"))
            if s.get(key) is not None})
    return SET(s["zeta"], s["set_every"])


def _recycling(s: dict[str, Any]) -> Any:
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
                     dropout=s["dropout"], seed=s["seed"], classes=classes, precision=s["precision"],
                     **sparsity)


def _check_outputs(save: str | None, out: str | None) -> None:
    """Makes the --out folder and checks that --save can be written, before
    any data is read or any epoch trained."""
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
                f"{checkpoint} holds {archive.describe_run(checkpoint)}; a new run does not replace it: "
                "add --resume to continue that run, or --overwrite to start a new one in its place")
        if s["resume"]:
            meta = archive.read_meta(checkpoint)
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


def _held_out(s: dict[str, Any], X: np.ndarray, y: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The training data without a random ``validation_fraction`` of it,
    and that part as validation data (for early stopping and the plateau
    schedule, which must not see the test data)."""
    fraction = s["validation_fraction"]
    if not 0 < fraction < 1:
        raise InvalidInputError(f"--validation-fraction must be between 0 and 1, got {fraction}")
    n_val = max(1, round(fraction * y.size))
    if n_val >= y.size:
        raise InvalidInputError(f"--validation-fraction {fraction} leaves no training data")
    order = np.random.default_rng([s["seed"], 0x7A1]).permutation(y.size)
    val, fit = np.sort(order[:n_val]), np.sort(order[n_val:])
    return X[fit], y[fit], (X[val], y[val])


def _uses_validation(s: dict[str, Any]) -> bool:
    """Whether a setting watches a validation metric (which then comes from
    the training data, not the test data)."""
    watches = s["early_stopping"] is not None or s["schedule"] == "plateau"
    return watches and s["monitor"].startswith("val_")


def train(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    s = settings(args, parser)
    verbose = 0 if s["quiet"] else s["verbose"]
    if s.get("threads") and not s.get("parallel"):
        _core.set_num_threads(s["threads"])
    rank = parallel._mpi().COMM_WORLD.Get_rank() if s.get("parallel") else 0
    out = s.get("out")
    checkpoint = s.get("checkpoint") or (os.path.join(out, "checkpoint.npz") if out else None)
    if s["resume"] and not checkpoint:
        raise InvalidInputError("--resume needs --checkpoint FILE or --out DIR (the run to continue)")

    def check_outputs() -> None:
        _check_outputs(s.get("save"), out)
        if checkpoint:
            check_writable(checkpoint, "the checkpoint")

    if s.get("parallel"):  # the server's files: every rank stops if one cannot be written
        parallel.check_together(check_outputs, s["timeout"])
    else:
        check_outputs()
    progress = _saved_progress(s, checkpoint) if not s.get("parallel") else None

    def say(text: str) -> None:
        if rank == 0 and verbose:
            print(text, flush=True)

    split = cli_data.load_data(s)
    data_info = cli_data.data_record(s, split)
    X_train, X_test = cli_data.scale(split.X_train, data_info), cli_data.scale(split.X_test, data_info)
    classes = split.classes or tuple(range(int(max(split.y_train.max(), split.y_test.max())) + 1))
    y_train, y_test = (cli_data.labels(split.classes, y) for y in (split.y_train, split.y_test))
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
    if s["restore_best"] and s["early_stopping"] is None:
        raise InvalidInputError("--restore-best goes with --early-stopping PATIENCE")
    stopper = None
    if s["early_stopping"] is not None:
        stopper = EarlyStopping(s["monitor"], patience=s["early_stopping"], restore_best=s["restore_best"])
        callbacks.append(stopper)
    if s.get("tensorboard") and rank == 0:
        callbacks.append(TensorBoard(s["tensorboard"]))
    if out and rank == 0:
        atomic_write(os.path.join(out, "settings.json"), lambda f: f.write(json.dumps(
            {k: v for k, v in s.items() if k != "config"}, indent=2, default=str).encode()))
        callbacks.append(MetricsLogger(out))
    options = FitOptions.from_settings(
        s, topology=_topology(s), pruning=pruning,
        recycling=_recycling(s), verbose=verbose if rank == 0 else 0, checkpoint=checkpoint,
        learning_rate=schedule(s))
    validation = (X_test, y_test)
    if _uses_validation(s):
        X_train, y_train, validation = _held_out(s, X_train, y_train)
        say(f"validation: {validation[1].size} samples held out of the training data for "
            f"{s['monitor']}")
    weights = {"class_weight": s["class_weight"]}
    outputs = [p for p in (s.get("save"), os.path.join(out, "model.npz") if out else None) if p]
    start, started = time.perf_counter(), time.time()
    if s.get("parallel"):
        if options.recycling is not None:
            raise InvalidInputError("--recycling and --midpoint do not combine with --parallel")
        trainer = parallel.WASAP(phase2_fraction=s["phase2_fraction"], sync=s["parallel"] == "wassp",
                                 threads=s.get("threads"), transport=s["transport"],
                                 overlap=s["overlap"], timeout=s["timeout"])
        history = trainer.fit_with(model, X_train, y_train, options, validation, callbacks, **weights)
    else:
        ends = (_EpochEnds(resumed["epochs_trained"], resumed["step"]) if progress is not None
                else _EpochEnds(model.epochs_trained, model._net.run_state[2]))
        try:
            history = loop.fit(model, X_train, y_train, options, validation, [*callbacks, ends],
                               **weights)
        except KeyboardInterrupt:
            return _interrupted(model, s, checkpoint, started, outputs, ends, argv,
                                -(-X_train.shape[0] // s["batch_size"]))
    model._config["data"] = data_info  # a resumed model keeps it too
    elapsed = time.perf_counter() - start
    if progress is not None and progress.get("finished"):
        say(f"nothing to train: the run saved in {checkpoint} had finished all "
            f"{progress['plan']['epochs']} epochs")
    scored = [r for r in (history or model.history) if "val_accuracy" in r]
    if rank == 0 and _uses_validation(s):
        test = model.evaluate(X_test, y_test)["accuracy"]
        note = ""
        if stopper is not None and stopper.best is not None:
            note = (f" (stopped after epoch {stopper.stopped_epoch}; " if stopper.stopped_epoch else " (")
            note += (f"best {s['monitor']} {stopper.best:.4f} at epoch {stopper.best_epoch}"
                     f"{', restored' if s['restore_best'] else ''})")
        print(f"test accuracy {test:.4f}{note}, {model.n_connections} connections, {elapsed:.1f} s",
              flush=True)
    elif rank == 0 and scored:
        best = max(r["val_accuracy"] for r in scored)
        print(f"final test accuracy {scored[-1]['val_accuracy']:.4f} (best {best:.4f}), "
              f"{model.n_connections} connections, {elapsed:.1f} s", flush=True)
    if rank == 0:
        for path in outputs:
            model.save(path)
            say(f"saved to {path}")
    return 0
