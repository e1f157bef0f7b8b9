"""Data sets: a built-in synthetic generator and readers for files users have.
Nothing is downloaded."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ._validation import number, positive_int
from .errors import InvalidInputError


class Split(NamedTuple):
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _hypercube_vertices(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct random vertices of the {0,1}^dim hypercube."""
    if dim < 63 and n > 2**dim:
        raise InvalidInputError(
            f"n_classes * n_clusters_per_class = {n} exceeds the 2**{dim} vertices of the "
            "informative hypercube; raise n_informative"
        )
    seen: set[bytes] = set()
    out = np.empty((n, dim), dtype=np.float64)
    k = 0
    while k < n:
        v = rng.integers(0, 2, size=dim, dtype=np.int8)
        key = v.tobytes()
        if key not in seen:
            seen.add(key)
            out[k] = v
            k += 1
    return out


def make_classification(
    n_samples: int = 1000,
    n_features: int = 20,
    n_informative: int = 5,
    n_redundant: int = 2,
    n_classes: int = 2,
    n_clusters_per_class: int = 2,
    class_sep: float = 1.0,
    flip_y: float = 0.01,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random classification data by the algorithm behind Madelon (Guyon 2003),
    as scikit-learn's ``make_classification`` implements it.

    Each class is ``n_clusters_per_class`` Gaussian clusters at vertices of a
    hypercube of side ``2·class_sep`` in ``n_informative`` dimensions, each
    with a random covariance; ``n_redundant`` features are random linear
    combinations of the informative ones; the rest is noise; a fraction
    ``flip_y`` of labels is randomized; samples and features are shuffled.
    Returns ``X`` (float32, n_samples × n_features) and ``y`` (int64).

    >>> X, y = make_classification(100, 10, n_informative=3, seed=1)
    >>> X.shape, sorted(set(y.tolist()))
    ((100, 10), [0, 1])
    """
    n_samples = positive_int("n_samples", n_samples)
    n_features = positive_int("n_features", n_features)
    n_informative = positive_int("n_informative", n_informative)
    n_classes = positive_int("n_classes", n_classes)
    n_clusters_per_class = positive_int("n_clusters_per_class", n_clusters_per_class)
    if n_redundant < 0 or n_informative + n_redundant > n_features:
        raise InvalidInputError(
            f"n_informative + n_redundant = {n_informative + n_redundant} must be at most "
            f"n_features = {n_features} (and n_redundant >= 0)"
        )
    class_sep = number("class_sep", class_sep, 0.0, np.inf, high_open=True)
    flip_y = number("flip_y", flip_y, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    n_clusters = n_classes * n_clusters_per_class
    centroids = _hypercube_vertices(n_clusters, n_informative, rng) * (2 * class_sep) - class_sep

    X = np.empty((n_samples, n_features), dtype=np.float32)
    y = np.empty(n_samples, dtype=np.int64)
    per_cluster = np.full(n_clusters, n_samples // n_clusters)
    per_cluster[: n_samples % n_clusters] += 1
    start = 0
    for k, count in enumerate(per_cluster):
        stop = start + count
        y[start:stop] = k % n_classes
        block = rng.standard_normal((count, n_informative))
        A = 2 * rng.random((n_informative, n_informative)) - 1
        X[start:stop, :n_informative] = block @ A + centroids[k]
        start = stop
    if n_redundant:
        B = 2 * rng.random((n_informative, n_redundant)) - 1
        X[:, n_informative:n_informative + n_redundant] = X[:, :n_informative] @ B
    n_useless = n_features - n_informative - n_redundant
    if n_useless:
        X[:, n_informative + n_redundant:] = rng.standard_normal((n_samples, n_useless))
    if flip_y > 0:
        flip = rng.random(n_samples) < flip_y
        y[flip] = rng.integers(0, n_classes, size=int(flip.sum()))
    order = rng.permutation(n_samples)
    X, y = X[order], y[order]
    X = X[:, rng.permutation(n_features)]
    return np.ascontiguousarray(X), y


def standardize(X_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scales every array by the training set's per-feature mean and std
    (constant features get std 1). Returns float32 arrays, train first."""
    mean = X_train.mean(axis=0, dtype=np.float64)
    std = X_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return [((a - mean) / std).astype(np.float32) for a in (X_train, *others)]


def synthetic(seed: int = 0) -> Split:
    """The built-in default data set: 10 classes, 200 features (30 informative,
    20 redundant), 10,000 training and 2,000 test samples, standardized."""
    X, y = make_classification(
        n_samples=12_000, n_features=200, n_informative=30, n_redundant=20, n_classes=10,
        n_clusters_per_class=2, class_sep=2.0, flip_y=0.01, seed=seed,
    )
    Xtr, Xte = standardize(X[:10_000], X[10_000:])
    return Split(Xtr, y[:10_000], Xte, y[10_000:])


def _read_matrix(path: str, what: str) -> np.ndarray:
    if not os.path.exists(path):
        raise InvalidInputError(f"{what} file not found: {path}")
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise InvalidInputError(f"{path} is not a whitespace-separated numeric table: {e}") from None
    return a


def load_madelon(directory: str | os.PathLike, standardized: bool = True) -> Split:
    """Madelon (UCI) from the files ``madelon_train.data/.labels`` and
    ``madelon_valid.data/.labels`` in ``directory``; the validation split is the
    test set, as in the paper. Labels -1/+1 become 0/1. Standardized with the
    training split's statistics unless ``standardized=False``."""
    d = os.fspath(directory)
    parts = []
    for split in ("train", "valid"):
        X = _read_matrix(os.path.join(d, f"madelon_{split}.data"), f"Madelon {split} data")
        y = _read_matrix(os.path.join(d, f"madelon_{split}.labels"), f"Madelon {split} labels")
        if y.shape[1] != 1 or y.shape[0] != X.shape[0]:
            raise InvalidInputError(
                f"Madelon {split}: {X.shape[0]} samples but labels of shape {y.shape}"
            )
        labels = y[:, 0]
        if not np.isin(labels, (-1, 1)).all():
            raise InvalidInputError(f"Madelon {split} labels must be -1 or +1")
        parts.append((X, (labels > 0).astype(np.int64)))
    (Xtr, ytr), (Xte, yte) = parts
    if Xtr.shape[1] != Xte.shape[1]:
        raise InvalidInputError(f"Madelon train has {Xtr.shape[1]} features, valid {Xte.shape[1]}")
    if standardized:
        Xtr, Xte = standardize(Xtr, Xte)
    else:
        Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    return Split(Xtr, ytr, Xte, yte)
