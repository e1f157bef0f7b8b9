"""Progress of a training run on the terminal: a tqdm bar over the run's
mini-batches (moved by the compiled core during an epoch), or lines; as a
callback, :class:`ProgressBar`."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

from .callbacks import Callback, TrainingRun


class Progress:
    """Progress of ``fit``. verbose 1: when stdout is a terminal, a tqdm bar
    over the run's mini-batches (moving during an epoch; the last epoch's
    loss, accuracy and nnz beside it), otherwise the first, the last and at
    most one line per second in between; verbose 2: a line per epoch; 0:
    nothing."""

    def __init__(self, verbose: int, epochs: int, done: int = 0, n_batches: int = 1) -> None:
        self.verbose = int(verbose)
        self.epochs = epochs
        self.n_batches = n_batches
        self.last = -math.inf
        self.bar = None
        if self.verbose == 1 and done < epochs and _is_terminal(sys.stdout):
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a dependency
                return
            self.bar = tqdm(total=epochs * n_batches, initial=done * n_batches, unit="batch",
                            desc=self._epoch(done + 1), file=sys.stdout, dynamic_ncols=True,
                            leave=True)

    def _epoch(self, epoch: int) -> str:
        return f"epoch {min(epoch, self.epochs)}/{self.epochs}"

    def batches(self, epoch: int, offset: int = 0) -> Callable[[int], None] | None:
        """The callback the compiled core calls during an epoch (about every
        50 ms) with the mini-batches it has done since ``offset``; None when
        there is no bar to move."""
        bar = self.bar
        if bar is None:
            return None
        base = (epoch - 1) * self.n_batches + offset

        def moved(done: int) -> None:
            bar.update(base + done - bar.n)
        return moved

    def report(self, epoch: int, r: dict[str, Any]) -> None:
        if self.verbose <= 0:
            return
        if self.bar is not None:
            fields = {"loss": f"{r['loss']:.4f}"}
            if "accuracy" in r:
                fields["acc"] = f"{r['accuracy']:.4f}"
            if "val_accuracy" in r:
                fields["val_acc"] = f"{r['val_accuracy']:.4f}"
            if "val_r2" in r:
                fields["val_r2"] = f"{r['val_r2']:.4f}"
            fields["nnz"] = str(r["n_connections"])
            self.bar.set_postfix(fields, refresh=False)
            self.bar.set_description(self._epoch(epoch + 1), refresh=False)
            self.bar.update(epoch * self.n_batches - self.bar.n)
            return
        now = time.monotonic()
        if self.verbose == 1 and 1 < epoch < self.epochs and now - self.last < 1.0:
            return
        self.last = now
        print(format_record(r, epoch, self.epochs), file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_record(r: dict[str, Any], epoch: int | None = None, epochs: int | None = None) -> str:
    """One line of an epoch's record: loss, accuracy, nnz, time."""
    epoch = r["epoch"] if epoch is None else epoch
    width = len(str(epochs or epoch))
    parts = [f"epoch {epoch:>{width}}" + (f"/{epochs}" if epochs else ""), f"loss {r['loss']:.4f}"]
    if "accuracy" in r:
        parts.append(f"acc {r['accuracy']:.4f}")
    if "val_loss" in r:
        parts.append(f"val_loss {r['val_loss']:.4f}")
    if "val_accuracy" in r:
        parts.append(f"val_acc {r['val_accuracy']:.4f}")
    if "val_r2" in r:
        parts.append(f"val_r2 {r['val_r2']:.4f}")
    parts += [f"nnz {r['n_connections']}", f"{r['seconds']:.2f}s"]
    if r.get("pruned_neurons"):
        parts.append(f"pruned {r['pruned_neurons']}")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Progress on the terminal, as ``verbose`` gives it: 1 a tqdm bar over
    the run's mini-batches (moved by the compiled core during an epoch) when
    stdout is a terminal, else at most a line a second; 2 a line per epoch;
    0 nothing. ``fit`` adds one for its ``verbose`` unless one is among its
    callbacks."""

    def __init__(self, verbose: int = 1) -> None:
        self.verbose = verbose
        self.display: Progress | None = None

    def __repr__(self) -> str:
        return f"ProgressBar(verbose={self.verbose})"

    def on_train_begin(self, run: TrainingRun) -> None:
        self.display = Progress(self.verbose, run.epochs, run.epoch, run.batches)

    def batches(self, epoch: int, offset: int = 0) -> Callable[[int], None] | None:
        """What the core calls during an epoch to move the bar (or None)."""
        return None if self.display is None else self.display.batches(epoch, offset)

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None:
        if self.display is not None and "loss" in record:  # (not WASAP's average)
            self.display.report(run.epoch, record)

    def close(self) -> None:
        if self.display is not None:
            self.display.close()
            self.display = None
