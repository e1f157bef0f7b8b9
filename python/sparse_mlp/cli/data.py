"""The data of the command line: what ``--data``, ``--train``/``--test`` name,
what a trained model remembers of its data, and the test split ``evaluate``
finds again."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from .. import datasets
from ..errors import InvalidInputError
from .settings import DEFAULTS


def label(text: Any) -> int | str:
    text = str(text)
    try:
        return int(text)
    except ValueError:
        return text


def load_data(s: dict[str, Any]) -> datasets.Split:
    """The split the settings name, not standardized."""
    if s.get("train"):
        return datasets.load_table(s["train"], s.get("test"), label=label(s.get("label", -1)),
                                   test_fraction=s.get("test_fraction", 0.25), seed=s.get("seed", 0),
                                   standardized=False)
    if s["data"] == "synthetic":
        return datasets.synthetic(seed=s.get("seed", 0))
    loader, _ = datasets.DATASETS[s["data"]]
    if not s.get("data_dir"):
        s["data_dir"] = datasets.locate(s["data"])
    return loader(s["data_dir"], standardized=False)


def data_record(s: dict[str, Any], split: datasets.Split) -> dict[str, Any]:
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


def scale(X: np.ndarray, data: dict[str, Any]) -> np.ndarray:
    if "mean" not in data:
        return np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(data["mean"]):
        raise InvalidInputError(f"the data have {X.shape[-1] if X.ndim else 0} features; the model "
                                f"was trained on {len(data['mean'])}")
    return ((X - np.asarray(data["mean"])) / np.asarray(data["std"])).astype(np.float32)


def labels(split_classes: tuple | None, y: np.ndarray) -> np.ndarray:
    """A split's encoded labels as the data's own labels again."""
    return y if split_classes is None else np.asarray(split_classes)[y]


def _filelabels(y: np.ndarray) -> np.ndarray:
    """A table's label column (read as text) as numbers where they are numbers."""
    return datasets._numeric_if_possible(y) if y.dtype.kind in "USO" else y


def evaluation_data(args: argparse.Namespace, data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
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
        X, y = datasets.read_table(args.test, label(s["label"]))
        if y is None:
            raise InvalidInputError(f"{args.test} has no label column")
        y = _filelabels(y)
    else:
        split = load_data(s)
        X, y = split.X_test, labels(split.classes, split.y_test)
    return (scale(X, data) if name != "synthetic" else X), y
