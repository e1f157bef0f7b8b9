"""Data sets: a built-in synthetic generator and loaders for the files users
have. Nothing is downloaded.

Every loader returns a :class:`Split` of float32 features and int64 labels
``0..k-1``, standardized with the training split's mean and std unless
``standardized=False``:

- :func:`load_madelon` (UCI text files), :func:`load_mnist` (MNIST and
  Fashion-MNIST IDX files, gzipped or not), :func:`load_cifar10` (the python
  pickle batches, read without executing code), :func:`load_higgs` (the UCI
  CSV, gzipped or not);
- :func:`load_table` for any tabular data (a Leukemia-style microarray
  matrix, say): CSV, ``.npy``, ``.npz`` or svmlight, with a test file or a
  random test fraction;
- :func:`make_classification` of any size and :func:`synthetic`, the default;
- :func:`load_dataset` picks one of these by name, as the command line does.
"""

from __future__ import annotations

import gzip
import os
from typing import Any, Callable, NamedTuple

import numpy as np

from . import formats
from ._validation import checked_sparse, number, positive_int, seed_value
from .errors import InvalidInputError


class Split(NamedTuple):
    """Training and test arrays; ``classes`` holds the original label of
    each class index when the files' labels were not already ``0..k-1``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple | None = None


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
    out: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random classification data by the algorithm behind Madelon (Guyon 2003),
    as scikit-learn's ``make_classification`` implements it.

    Each class is ``n_clusters_per_class`` Gaussian clusters at vertices of a
    hypercube of side ``2·class_sep`` in ``n_informative`` dimensions, each
    with a random covariance; ``n_redundant`` features are random linear
    combinations of the informative ones; the rest is noise; a fraction
    ``flip_y`` of labels is randomized; samples and features are shuffled.
    Returns ``X`` (float32, n_samples × n_features) and ``y`` (int64).

    Any size: rows are generated in blocks straight into the result, so the
    memory needed is the result's. With ``out`` (a ``.npy`` path) ``X`` is
    written there and returned memory-mapped, for data larger than memory,
    such as the paper's 65536-feature runs. The numbers do not depend on
    ``out`` or the block size.

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
    seed = seed_value(seed, allow_none=True)
    # Separate streams for structure, informative and noise features, so the
    # values do not depend on how rows are blocked.
    structure, informative, noise = (np.random.default_rng(s)
                                     for s in np.random.SeedSequence(seed).spawn(3))
    n_clusters = n_classes * n_clusters_per_class
    centroids = _hypercube_vertices(n_clusters, n_informative, structure) * (2 * class_sep) - class_sep
    covariances = 2 * structure.random((n_clusters, n_informative, n_informative)) - 1
    mixing = 2 * structure.random((n_informative, n_redundant)) - 1
    per_cluster = np.full(n_clusters, n_samples // n_clusters)
    per_cluster[: n_samples % n_clusters] += 1
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    cluster = cluster[structure.permutation(n_samples)]
    columns = structure.permutation(n_features)
    inf_cols = columns[:n_informative]
    red_cols = columns[n_informative:n_informative + n_redundant]
    noise_cols = columns[n_informative + n_redundant:]
    y = (cluster % n_classes).astype(np.int64)
    if flip_y > 0:
        flip = structure.random(n_samples) < flip_y
        y[flip] = structure.integers(0, n_classes, size=int(flip.sum()))

    if out is None:
        X = np.empty((n_samples, n_features), dtype=np.float32)
    else:
        X = np.lib.format.open_memmap(os.fspath(out), mode="w+", dtype=np.float32,
                                      shape=(n_samples, n_features))
    block = max(1, (1 << 22) // n_features)
    for a in range(0, n_samples, block):
        b = min(n_samples, a + block)
        z = informative.standard_normal((b - a, n_informative))
        for k in np.unique(cluster[a:b]):
            rows = np.flatnonzero(cluster[a:b] == k)
            z[rows] = z[rows] @ covariances[k] + centroids[k]
        X[a:b, inf_cols] = z
        if n_redundant:
            X[a:b, red_cols] = z @ mixing
        if noise_cols.size:
            X[a:b, noise_cols] = noise.standard_normal((b - a, noise_cols.size), dtype=np.float32)
    if out is not None:
        X.flush()
    return X, y


def standardize(X_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scales every array by the training set's per-feature mean and std
    (constant features get std 1). Returns float32 arrays, train first.

    >>> a, b = standardize(np.array([[1.0, 5.0], [3.0, 5.0]]), np.array([[2.0, 6.0]]))
    >>> a.tolist(), b.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0]])
    """
    X_train = _table(X_train, "X_train")
    mean, std = feature_scaling(X_train)
    others = tuple(_table(a, f"others[{i}]", mean.size) for i, a in enumerate(others))
    return [((a - mean) / std).astype(np.float32) for a in (X_train, *others)]


def _table(X: Any, name: str, n_features: int | None = None) -> np.ndarray:
    """``X`` as a 2-D numeric array (not copied), with ``n_features`` columns."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # scipy.sparse
        X = checked_sparse(X, name).toarray()
    try:
        a = np.asarray(X)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{name} cannot be read as a numeric array: {e}") from None
    if a.dtype.kind not in "biuf" or a.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array of numbers, got dtype {a.dtype} and "
                                f"shape {a.shape}")
    if n_features is not None and a.shape[1] != n_features:
        raise InvalidInputError(f"{name} has {a.shape[1]} features; the training data have "
                                f"{n_features}")
    return a


def feature_scaling(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std (float64) of the training data; constant
    features get std 1."""
    X_train = _table(X_train, "X_train")
    if X_train.shape[0] == 0:
        raise InvalidInputError("X_train has no samples")
    mean = X_train.mean(axis=0, dtype=np.float64)
    std = X_train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return mean, std


def encode_labels(*label_arrays: np.ndarray) -> tuple[list[np.ndarray], tuple | None]:
    """Labels as int64 indices ``0..k-1`` shared by all arrays. Integer labels
    that already are ``0..k-1`` stay as they are (``classes`` is None); other
    labels (strings, -1/+1, 1..k) map to their sorted order.

    >>> encode_labels(np.array(["b", "a"]), np.array(["a"]))
    ([array([1, 0]), array([0])], ('a', 'b'))
    """
    if not label_arrays:
        raise InvalidInputError("encode_labels needs at least one array of labels")
    arrays = [np.asarray(a).ravel() for a in label_arrays]
    if any(a.dtype.kind not in "biufUSO" for a in arrays):
        raise InvalidInputError(f"labels must be numbers or strings, got dtypes "
                                f"{[str(a.dtype) for a in arrays]}")
    if all(a.dtype.kind in "iub" for a in arrays):
        joined = np.concatenate(arrays).astype(np.int64)
        if joined.size and joined.min() == 0:
            return [a.astype(np.int64) for a in arrays], None
    if any(a.dtype.kind in "US" for a in arrays):
        arrays = [_numeric_if_possible(a) for a in arrays]
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays):
        raise InvalidInputError("labels contain NaN or infinite values")
    classes, inverse = np.unique(np.concatenate(arrays), return_inverse=True)
    if classes.size < 2:
        raise InvalidInputError(f"the labels hold a single class ({classes.tolist()}); need at least 2")
    bounds = np.cumsum([0] + [a.size for a in arrays])
    encoded = [inverse[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
    return encoded, tuple(v.item() if isinstance(v, np.generic) else v for v in classes)


def _numeric_if_possible(a: np.ndarray) -> np.ndarray:
    try:
        f = a.astype(np.float64)
    except ValueError:
        return a.astype(str)
    return f.astype(np.int64) if np.array_equal(f, np.round(f)) else f


def _finish(X_train: np.ndarray, y_train: Any, X_test: np.ndarray, y_test: Any,
            standardized: bool) -> Split:
    (ytr, yte), classes = encode_labels(y_train, y_test)
    if X_train.shape[1] != X_test.shape[1]:
        raise InvalidInputError(f"the training data has {X_train.shape[1]} features, "
                                f"the test data {X_test.shape[1]}")
    for name, X in (("training", X_train), ("test", X_test)):
        if X.dtype.kind == "f" and not np.isfinite(X).all():
            r, c = np.argwhere(~np.isfinite(X))[0]
            raise InvalidInputError(f"the {name} data has a NaN or infinite value at row {r + 1}, "
                                    f"column {c + 1} of its features")
    if standardized:
        X_train, X_test = standardize(X_train, X_test)
    else:
        X_train, X_test = (np.ascontiguousarray(X_train, dtype=np.float32),
                           np.ascontiguousarray(X_test, dtype=np.float32))
    return Split(X_train, ytr, X_test, yte, classes)


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
    test set, as in the paper. Labels -1/+1 become 0/1, with ``classes`` (-1, 1).
    Standardized with the
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
        parts.append((X, labels.astype(np.int64)))
    (Xtr, ytr), (Xte, yte) = parts
    if Xtr.shape[1] != Xte.shape[1]:
        raise InvalidInputError(f"Madelon train has {Xtr.shape[1]} features, valid {Xte.shape[1]}")
    return _finish(Xtr, ytr, Xte, yte, standardized)


def _find(directory: str, names: list[str], what: str) -> str:
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    raise InvalidInputError(f"{what} not found in {directory}: expected one of "
                            f"{', '.join(n + '[.gz]' for n in names)}")


def load_mnist(directory: str | os.PathLike, standardized: bool = True) -> Split:
    """MNIST or Fashion-MNIST (same format and file names) from the four IDX
    files in ``directory`` (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each optionally ``.gz``). Images become 784
    features scaled to [0, 1], then standardized unless ``standardized=False``."""
    d = os.fspath(directory)
    parts = []
    for split in ("train", "t10k"):
        images = formats.read_idx(_find(d, [f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"],
                                        f"MNIST {split} images"))
        labels = formats.read_idx(_find(d, [f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"],
                                        f"MNIST {split} labels"))
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise InvalidInputError(f"MNIST {split}: images of shape {images.shape} do not match "
                                    f"labels of shape {labels.shape}")
        parts.append((images.reshape(images.shape[0], -1).astype(np.float32) / 255.0, labels))
    (Xtr, ytr), (Xte, yte) = parts
    return _finish(Xtr, ytr, Xte, yte, standardized)


load_fashion_mnist = load_mnist


def load_cifar10(directory: str | os.PathLike, standardized: bool = True) -> Split:
    """CIFAR-10 from its python batches (``data_batch_1`` .. ``data_batch_5``
    and ``test_batch``) in ``directory`` or its ``cifar-10-batches-py``
    folder. Images become 3072 features (channel-major, as stored) scaled
    to [0, 1], then standardized unless ``standardized=False``. The pickles
    are read by an unpickler that rebuilds only arrays and plain data."""
    d = os.fspath(directory)
    if os.path.isdir(os.path.join(d, "cifar-10-batches-py")):
        d = os.path.join(d, "cifar-10-batches-py")
    train_files = sorted(f for f in os.listdir(d) if f.startswith("data_batch_")) if os.path.isdir(d) else []
    if not train_files:
        raise InvalidInputError(f"no CIFAR-10 training batches (data_batch_1 ...) in {d}")
    train = [formats.read_cifar_batch(os.path.join(d, f)) for f in train_files]
    Xte, yte = formats.read_cifar_batch(_find(d, ["test_batch"], "CIFAR-10 test batch"))
    Xtr = np.concatenate([b[0] for b in train])
    ytr = np.concatenate([b[1] for b in train])
    return _finish(Xtr.astype(np.float32) / 255.0, ytr, Xte.astype(np.float32) / 255.0, yte,
                   standardized)


# The paper's HIGGS split; smaller files (such as the 25,971-row subset in
# ../shared/data/higgs-subset) train on their first SMALL_HIGGS_TRAIN rows.
HIGGS_PAPER_SPLIT, SMALL_HIGGS_TRAIN = (105_000, 50_000), 20_000


def load_higgs(path: str | os.PathLike, n_train: int | None = None, n_test: int | None = None,
               standardized: bool = True) -> Split:
    """HIGGS (UCI) from ``HIGGS.csv`` or ``HIGGS.csv.gz``, or a folder holding
    it (or a single ``HIGGS*.csv[.gz]``, such as ``HIGGS_subset.csv``):
    label first, then 28 features. The first ``n_train`` rows train and the
    next ``n_test`` test; only those rows are read. By default the paper's
    105,000 / 50,000 when the file has that many rows, else the first 20,000
    rows train and the rest test (20,000 / 5,971 for the 25,971-row subset)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(n for n in os.listdir(path) if n.startswith("HIGGS") and
                       (n.endswith(".csv") or n.endswith(".csv.gz")))
        path = _find(path, ["HIGGS.csv"], "HIGGS.csv") if len(found) != 1 else os.path.join(path, found[0])
    if n_train is not None:
        n_train = positive_int("n_train", n_train)
    if n_test is not None:
        n_test = positive_int("n_test", n_test)
    wanted = n_train + n_test if n_train and n_test else sum(HIGGS_PAPER_SPLIT)
    with formats.open_maybe_gzip(path) as f:
        try:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2, max_rows=wanted)
        except (ValueError, EOFError, OSError, gzip.BadGzipFile) as e:
            raise InvalidInputError(f"{path} is not a HIGGS CSV file: {e}") from None
    if n_train is None or n_test is None:
        if table.shape[0] >= sum(HIGGS_PAPER_SPLIT) and n_train is None and n_test is None:
            n_train, n_test = HIGGS_PAPER_SPLIT
        else:
            n_train = n_train or min(SMALL_HIGGS_TRAIN, table.shape[0] - (n_test or 1))
            n_test = n_test or table.shape[0] - n_train
        if n_train < 1 or n_test < 1:
            raise InvalidInputError(f"{path} has {table.shape[0]} rows: too few for a training and a "
                                    "test part")
    if table.shape[0] < n_train + n_test or table.shape[1] != 29:
        raise InvalidInputError(f"{path}: need {n_train + n_test} rows of 29 columns (label, 28 "
                                f"features), found {table.shape[0]} rows of {table.shape[1]}")
    labels = table[:, 0]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise InvalidInputError(f"{path}: HIGGS labels (first column) must be 0 or 1")
    y = labels.astype(np.int64)
    end = n_train + n_test
    return _finish(table[:n_train, 1:], y[:n_train], table[n_train:end, 1:], y[n_train:end], standardized)


def read_table(path: str | os.PathLike, label: int | str | None = -1
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and raw labels of one file, by its extension: ``.csv``,
    ``.tsv``, ``.txt`` (optionally ``.gz``): a table with a label column
    (``label``: index or header name); ``.svm``/``.svmlight``/``.libsvm``;
    ``.npy``: a 2-D array whose column ``label`` holds the labels; ``.npz``:
    arrays ``X`` and ``y``. With ``label=None`` every column is a feature
    (for prediction) and the labels returned are None."""
    path = os.fspath(path)
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower()
    if ext in (".csv", ".tsv", ".txt", ".data"):
        return formats.read_csv(path, label=label)
    if ext in (".svm", ".svmlight", ".libsvm"):
        X, y = formats.read_svmlight(path)
        return X, None if label is None else y
    if ext in (".npy", ".npz"):
        arrays = formats.read_arrays(path)
        if ext == ".npz":
            if "X" not in arrays or ("y" not in arrays and label is not None):
                raise InvalidInputError(f"{path} must hold arrays named X and y, has {sorted(arrays)}")
            return arrays["X"], arrays.get("y") if label is not None else None
        table = arrays["X"]
        if label is None:
            return table, None
        if table.ndim != 2 or table.shape[1] < 2 or not isinstance(label, int):
            raise InvalidInputError(f"{path}: a .npy table must be 2-D with an integer label column; "
                                    f"got shape {table.shape}")
        column = label % table.shape[1]
        return np.delete(table, column, axis=1), table[:, column]
    raise InvalidInputError(f"{path}: unknown file type {ext!r}; use .csv, .tsv, .txt, .npy, .npz, "
                            ".svm/.svmlight/.libsvm (optionally .gz)")


def load_table(train: str | os.PathLike, test: str | os.PathLike | None = None,
               label: int | str = -1, test_fraction: float = 0.25, seed: int = 0,
               standardized: bool = True) -> Split:
    r"""Any tabular data set: ``train`` (and ``test``) files read by
    :func:`read_table`. Without a test file, a stratified random
    ``test_fraction`` of the samples is held out (``seed`` picks it).
    Labels of any kind become ``0..k-1``; ``Split.classes`` keeps the originals.
    An ``.npz`` with ``X_train, y_train, X_test, y_test`` holds both splits.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> _ = open(path, "w").write("a,b,kind\n1,2,x\n2,3,y\n3,1,x\n0,5,y\n")
    >>> split = load_table(path, label="kind", test_fraction=0.5)
    >>> split.X_train.shape, split.classes
    ((2, 2), ('x', 'y'))
    """
    if test is None and os.fspath(train).endswith(".npz"):
        arrays = formats.read_arrays(train)
        if {"X_train", "y_train", "X_test", "y_test"} <= set(arrays):
            return _finish(arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"],
                           standardized)
    X, y = _labelled(train, label)
    if test is not None:
        Xte, yte = _labelled(test, label)
        return _finish(X, y, Xte, yte, standardized)
    fraction = number("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    rng = np.random.default_rng(seed_value(seed))
    test_rows = []
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        test_rows.append(rows[: int(round(fraction * rows.size))])
    is_test = np.zeros(y.shape[0], dtype=bool)
    is_test[np.concatenate(test_rows)] = True
    if is_test.all() or not is_test.any():
        raise InvalidInputError(f"test_fraction {fraction} leaves an empty split of {y.shape[0]} samples")
    return _finish(X[~is_test], y[~is_test], X[is_test], y[is_test], standardized)


def _labelled(path: str | os.PathLike, label: int | str) -> tuple[np.ndarray, np.ndarray]:
    X, y = read_table(path, label)
    if y is None:
        raise InvalidInputError(f"{path}: a training table needs a label column")
    _check_table(X, y, os.fspath(path))
    return X, y


def _check_table(X: np.ndarray, y: np.ndarray, path: str) -> None:
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
        raise InvalidInputError(f"{path}: features of shape {X.shape} and labels of shape {y.shape} "
                                "do not make a table")
    if X.dtype.kind not in "biuf":
        raise InvalidInputError(f"{path}: features must be numbers, got dtype {X.dtype}")


# name -> (loader taking the data path, what the path is)
DATASETS: dict[str, tuple[Callable[..., Split], str]] = {
    "madelon": (load_madelon, "the folder with madelon_train.data"),
    "mnist": (load_mnist, "the folder with the MNIST IDX files"),
    "fashion_mnist": (load_mnist, "the folder with the Fashion-MNIST IDX files"),
    "cifar10": (load_cifar10, "the folder with the CIFAR-10 python batches"),
    "higgs": (load_higgs, "HIGGS.csv[.gz] or its folder"),
}


# The folder names a data set goes by, and where to look for them when no
# path is given: $SPARSE_MLP_DATA_DIR, the shared data of a checkout next to
# this one, and Debian's dataset packages (dataset-fashion-mnist installs
# /usr/share/datasets/fashion-mnist).
FOLDERS = {"madelon": ["madelon"], "mnist": ["mnist"], "fashion_mnist": ["fashion-mnist", "fashion_mnist"],
           "cifar10": ["cifar-10-batches-py", "cifar10", "cifar-10"],
           "higgs": ["higgs", "higgs-subset", "HIGGS"]}
SEARCH_ROOTS = [os.path.join("..", "shared", "data"), "/usr/share/datasets"]


def locate(name: str, roots: list[str] | None = None) -> str:
    """The folder of data set ``name`` when no path is given: the first of
    ``$SPARSE_MLP_DATA_DIR`` (itself, or its sub-folder named after the data
    set) and ``roots`` (default :data:`SEARCH_ROOTS`, relative to the current
    folder) that holds it. The error lists every place looked at."""
    if name not in DATASETS:
        raise InvalidInputError(f"unknown data set {name!r}; known: synthetic, {', '.join(DATASETS)}")
    tried = []
    env = os.environ.get("SPARSE_MLP_DATA_DIR")
    candidates = []
    if env:
        candidates += [os.path.join(env, f) for f in FOLDERS[name]] + [env]
    for root in SEARCH_ROOTS if roots is None else roots:
        candidates += [os.path.join(root, f) for f in FOLDERS[name]]
    for path in candidates:
        tried.append(path)
        if os.path.isdir(path) and os.listdir(path):
            return path
    raise InvalidInputError(f"data set {name!r} needs its files ({DATASETS[name][1]}): give --data-dir "
                            f"DIR; looked in {', '.join(tried)}")


def load_dataset(name: str, path: str | os.PathLike | None = None, seed: int = 0) -> Split:
    """A data set by name: ``"synthetic"`` (built in) or one of
    :data:`DATASETS` read from ``path`` (default: found by :func:`locate`)."""
    if name == "synthetic":
        return synthetic(seed=seed)
    if name not in DATASETS:
        raise InvalidInputError(f"unknown data set {name!r}; known: synthetic, {', '.join(DATASETS)} "
                                "(or give files with --train/--test)")
    loader, _ = DATASETS[name]
    return loader(locate(name) if path is None else path)
