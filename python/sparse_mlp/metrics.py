"""Per-epoch metrics written to disk as JSON Lines and CSV while training runs.

>>> import os, tempfile, numpy as np, sparse_mlp as sm
>>> out = tempfile.mkdtemp()
>>> X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32); y = (X[:, 0] > 0).astype(int)
>>> _ = sm.SparseMLP([5, 16, 2], epsilon=3, seed=0).fit(
...     X, y, epochs=3, verbose=0, callbacks=[sm.MetricsLogger(out)])
>>> [r["epoch"] for r in sm.read_metrics(out)]
[1, 2, 3]
>>> open(os.path.join(out, "metrics.csv")).readline().split(",")[:3]
['epoch', 'loss', 'accuracy']
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from .errors import InvalidInputError
from .files import atomic_write
from .training.callbacks import Callback, TrainingRun

# CSV columns in this order first; other scalar entries follow as they appear.
_FIRST = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "n_connections", "n_neurons",
          "layer_connections", "seconds", "train_seconds", "eval_seconds", "topology_seconds")


def _scalar(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """The record's numbers, with short lists of numbers joined by ';' (for
    CSV); long structures such as recycling summaries stay in the JSON file."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        value = _scalar(value)
        if isinstance(value, (int, float, str, bool)) or value is None:
            out[key] = value
        elif isinstance(value, list) and len(value) <= 64 and all(
                isinstance(v, (int, float)) for v in value):
            out[key] = ";".join(str(v) for v in value)
    return out


class MetricsLogger(Callback):
    """A training callback that adds each epoch's record to
    ``directory/metrics.jsonl`` (everything) and ``directory/metrics.csv``
    (the scalars, one column each). Both files are replaced atomically after
    every epoch, so a killed run leaves whole files.

    As a callback of a training run, the files hold the run's whole history:
    a resumed run (``fit(resume=True)``) writes the saved run's records too,
    those of epochs trained again are not repeated, and a record an
    interrupted run had no time to write is not lost. Called as a function
    ``logger(model, record)``, it keeps the file's records of earlier epochs.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.jsonl = os.path.join(self.directory, "metrics.jsonl")
        self.csv = os.path.join(self.directory, "metrics.csv")
        self.records: list[dict[str, Any]] | None = None

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None:
        if self.records is None:  # the run's earlier records, as its history holds them
            self.records = [json.loads(json.dumps(r, default=_scalar)) for r in run.history
                            if r is not record]
        self(run.model, record)

    def __call__(self, model: Any, record: dict[str, Any]) -> None:
        entry = json.loads(json.dumps(record, default=_scalar))
        if self.records is None:
            kept = [r for r in read_metrics(self.directory, missing_ok=True)
                    if r.get("epoch", 0) < entry.get("epoch", 0)]
            self.records = kept
        self.records.append(entry)
        self._write()

    def _write(self) -> None:
        assert self.records is not None
        lines = "".join(json.dumps(r) + "\n" for r in self.records)
        atomic_write(self.jsonl, lambda f: f.write(lines.encode()))
        rows = [_flat(r) for r in self.records]
        columns = [c for c in _FIRST if any(c in r for r in rows)]
        for r in rows:
            columns += [k for k in r if k not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.csv, lambda f: f.write(text.getvalue().encode()))


def read_metrics(path: str | os.PathLike, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or the directory holding one)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(path):
        if missing_ok:
            return []
        raise InvalidInputError(f"no metrics file at {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{path}, line {lineno}: not JSON ({e})") from None
    return records
