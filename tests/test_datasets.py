"""Data loaders on small files written in the real formats, and the generator."""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

import sparse_mlp as sm
from sparse_mlp import datasets, formats


def _write_idx(path, array, compress=False):
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
             np.float64: 0x0E}
    code = codes[array.dtype.type]
    data = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(data)
    return data


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    a = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4)
    a = (a % 200 if dtype == np.uint8 else a * 1.5 if dtype in (np.float32, np.float64) else a).astype(dtype)
    path = tmp_path / "a.idx"
    _write_idx(path, a, compress)
    b = formats.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_errors_name_the_problem(tmp_path):
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    data = _write_idx(tmp_path / "ok", a)
    (tmp_path / "cut").write_bytes(data[:-7])
    with pytest.raises(sm.InvalidInputError, match="promises shape"):
        formats.read_idx(tmp_path / "cut")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(sm.InvalidInputError, match="magic"):
        formats.read_idx(tmp_path / "magic")
    (tmp_path / "type").write_bytes(data[:2] + b"\x07" + data[3:])
    with pytest.raises(sm.InvalidInputError, match="element type"):
        formats.read_idx(tmp_path / "type")
    # A header claiming a huge shape must not allocate it.
    (tmp_path / "huge").write_bytes(struct.pack(">BBBBIII", 0, 0, 8, 3, 2**31, 2**31, 2**31))
    with pytest.raises(sm.InvalidInputError, match="promises shape"):
        formats.read_idx(tmp_path / "huge")
    gz = gzip.compress(data)
    (tmp_path / "badgz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(sm.InvalidInputError, match="gzip"):
        formats.read_idx(tmp_path / "badgz")
    with pytest.raises(sm.InvalidInputError, match="not found"):
        formats.read_idx(tmp_path / "missing")


def _mnist_dir(tmp, n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n, compress in (("train", n_train, True), ("t10k", n_test, False)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        labels[:10] = np.arange(10)
        suffix = ".gz" if compress else ""
        _write_idx(tmp / f"{split}-images-idx3-ubyte{suffix}", images, compress)
        _write_idx(tmp / f"{split}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[split] = (images, labels)
    return arrays


def test_mnist_and_fashion_mnist(tmp_path):
    arrays = _mnist_dir(tmp_path)
    raw = datasets.load_mnist(tmp_path, standardized=False)
    images, labels = arrays["train"]
    np.testing.assert_allclose(raw.X_train, images.reshape(30, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(raw.y_train, labels)
    assert raw.X_test.shape == (10, 784) and raw.y_test.dtype == np.int64
    split = datasets.load_fashion_mnist(tmp_path)
    expected = datasets.standardize(raw.X_train, raw.X_test)
    np.testing.assert_allclose(split.X_train, expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(split.X_test, expected[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0, atol=1e-5)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(sm.InvalidInputError, match="t10k labels not found"):
        datasets.load_mnist(tmp_path)


def test_mnist_with_mismatched_counts(tmp_path):
    _mnist_dir(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(9, dtype=np.uint8))
    with pytest.raises(sm.InvalidInputError, match="do not match"):
        datasets.load_mnist(tmp_path)


def _cifar_dir(tmp, batches=2, n=20, protocol=2):
    rng = np.random.default_rng(1)
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    written = []
    for name in [f"data_batch_{i}" for i in range(1, batches + 1)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        labels[:10] = list(range(10))
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        written.append((data, labels))
    return written


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches(tmp_path, protocol):
    written = _cifar_dir(tmp_path, protocol=protocol)
    raw = datasets.load_cifar10(tmp_path, standardized=False)
    assert raw.X_train.shape == (40, 3072) and raw.X_test.shape == (20, 3072)
    np.testing.assert_allclose(raw.X_train[:20], written[0][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(raw.y_train[20:], written[1][1])
    np.testing.assert_array_equal(raw.y_test, written[2][1])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_pickles_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f)
    with pytest.raises(sm.InvalidInputError, match="refusing to load"):
        datasets.load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), dtype=np.float64), b"labels": [0, 1]}, f)
    with pytest.raises(sm.InvalidInputError, match="uint8"):
        datasets.load_cifar10(tmp_path)
    (folder / "data_batch_1").write_bytes(b"\x80\x02garbage")
    with pytest.raises(sm.InvalidInputError, match="not a readable data pickle"):
        datasets.load_cifar10(tmp_path)
    with pytest.raises(sm.InvalidInputError, match="no CIFAR-10 training batches"):
        datasets.load_cifar10(tmp_path / "elsewhere")


def test_higgs_csv_gz(tmp_path):
    rng = np.random.default_rng(2)
    table = rng.normal(size=(50, 29))
    table[:, 0] = rng.integers(0, 2, size=50)
    path = tmp_path / "HIGGS.csv.gz"
    with gzip.open(path, "wt") as f:
        for row in table:
            f.write(",".join(f"{v:.18e}" for v in row) + "\n")
    split = datasets.load_higgs(tmp_path, n_train=30, n_test=15, standardized=False)
    np.testing.assert_allclose(split.X_train, table[:30, 1:], rtol=1e-6)
    np.testing.assert_allclose(split.X_test, table[30:45, 1:], rtol=1e-6)
    np.testing.assert_array_equal(split.y_test, table[30:45, 0])
    with pytest.raises(sm.InvalidInputError, match="need 60 rows"):
        datasets.load_higgs(path, n_train=40, n_test=20)


def test_csv_with_header_and_string_labels(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("gene1,gene2,type\n1.5,2,ALL\n-3,4e-1,AML\n5,6,ALL\n7,8,MLL\n")
    X, y = datasets.read_table(path, label="type")
    np.testing.assert_allclose(X, [[1.5, 2], [-3, 0.4], [5, 6], [7, 8]])
    assert y.tolist() == ["ALL", "AML", "ALL", "MLL"]
    split = datasets.load_table(path, test=path, label="type", standardized=False)
    assert split.classes == ("ALL", "AML", "MLL") and split.y_train.tolist() == [0, 1, 0, 2]


def test_csv_without_header_label_first_semicolons_and_gzip(tmp_path):
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("1;0.5;0.25\n-1;1.5;2.5\n1;3;4\n")
    X, y = datasets.read_table(path, label=0)
    np.testing.assert_allclose(X, [[0.5, 0.25], [1.5, 2.5], [3, 4]])
    (ytr,), classes = datasets.encode_labels(y)
    assert classes == (-1, 1) and ytr.tolist() == [1, 0, 1]


@pytest.mark.parametrize("text, message", [
    ("1,2,0\n3,4\n", "line 2: 2 columns"),
    ("1,2,0\n3,x,1\n", "line 2, column 2: 'x' is not a number"),
    ("a,b,c\n1,2,0\n\n3,4,1\n1,2\n", "line 5: 2 columns"),
    ("", "empty"),
    ("a,b,c\n", "no data rows"),
])
def test_malformed_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(sm.InvalidInputError, match=message):
        datasets.load_table(path)


def test_svmlight(tmp_path):
    path = tmp_path / "d.svm"
    path.write_text("# comment\n1 1:0.5 3:2\n-1 qid:3 2:-1.5 # tail\n1\n")
    X, y = datasets.read_table(path)
    np.testing.assert_array_equal(X, [[0.5, 0, 2], [0, -1.5, 0], [0, 0, 0]])
    assert y.tolist() == ["1", "-1", "1"]
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    Xs, ys = sklearn_datasets.load_svmlight_file(str(path))
    np.testing.assert_array_equal(X, Xs.toarray())
    path.write_text("1 0:1\n")
    with pytest.raises(sm.InvalidInputError, match="must be >= 1"):
        datasets.read_table(path)
    path.write_text("1 a:b\n")
    with pytest.raises(sm.InvalidInputError, match="index:value"):
        datasets.read_table(path)


def test_npy_and_npz(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5))
    y = np.repeat([3, 7], 20)
    np.save(tmp_path / "t.npy", np.column_stack([X, y]))
    Xr, yr = datasets.read_table(tmp_path / "t.npy")
    np.testing.assert_array_equal(Xr, X)
    np.savez(tmp_path / "t.npz", X=X, y=y)
    split = datasets.load_table(tmp_path / "t.npz", test_fraction=0.25, seed=1, standardized=False)
    assert split.X_train.shape == (30, 5) and split.X_test.shape == (10, 5)
    assert np.bincount(split.y_test).tolist() == [5, 5] and split.classes == (3, 7)
    rows = {tuple(r) for r in np.vstack([split.X_train, split.X_test]).astype(np.float32).tolist()}
    assert rows == {tuple(r) for r in X.astype(np.float32).tolist()}
    np.savez(tmp_path / "s.npz", X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    split = datasets.load_table(tmp_path / "s.npz", standardized=False)
    np.testing.assert_allclose(split.X_test, X[30:], rtol=1e-6)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(sm.InvalidInputError, match="without objects"):
        datasets.read_table(tmp_path / "obj.npy")
    np.savez(tmp_path / "nan.npz", X=np.full((4, 2), np.nan), y=[0, 1, 0, 1])
    with pytest.raises(sm.InvalidInputError, match="NaN"):
        datasets.load_table(tmp_path / "nan.npz", test_fraction=0.5)
    with pytest.raises(sm.InvalidInputError, match="unknown file type"):
        datasets.read_table(tmp_path / "t.xlsx")


def test_labels_are_encoded_once_for_both_splits():
    (a, b), classes = datasets.encode_labels(np.array([2, 5]), np.array([5, 9]))
    assert a.tolist() == [0, 1] and b.tolist() == [1, 2] and classes == (2, 5, 9)
    (a,), classes = datasets.encode_labels(np.array([0, 2, 1]))
    assert classes is None and a.tolist() == [0, 2, 1]
    with pytest.raises(sm.InvalidInputError, match="single class"):
        datasets.encode_labels(np.array(["x", "x"]))


def test_make_classification_structure():
    X, y = datasets.make_classification(4000, 40, n_informative=6, n_redundant=4, n_classes=3,
                                        n_clusters_per_class=2, class_sep=3.0, flip_y=0.0, seed=5)
    assert X.dtype == np.float32 and X.shape == (4000, 40)
    assert np.bincount(y).tolist() == [1334, 1333, 1333]
    # Redundant features are linear combinations of the informative ones:
    # the 10 structured columns have rank 6; the noise is N(0, 1).
    var = X.astype(np.float64).var(axis=0)
    corr = np.corrcoef(X.astype(np.float64), rowvar=False)
    noisy = [j for j in range(40) if abs(var[j] - 1) < 0.1 and np.abs(np.delete(corr[j], j)).max() < 0.1]
    assert len(noisy) == 30
    signal = [j for j in range(40) if j not in noisy]
    assert np.linalg.matrix_rank(X[:, signal].astype(np.float64), tol=1e-3 * len(X)) == 6
    # The classes are separable: nearest class mean on the signal columns.
    means = np.stack([X[y == k][:, signal].mean(axis=0) for k in range(3)])
    d = ((X[:, signal][:, None, :] - means[None]) ** 2).sum(axis=2)
    assert (d.argmin(axis=1) == y).mean() > 0.6


def test_make_classification_to_a_memory_map_is_identical(tmp_path):
    X, y = datasets.make_classification(3000, 2000, n_informative=8, seed=9)
    Xm, ym = datasets.make_classification(3000, 2000, n_informative=8, seed=9, out=tmp_path / "X.npy")
    assert isinstance(Xm, np.memmap)
    np.testing.assert_array_equal(X, Xm)
    np.testing.assert_array_equal(y, ym)
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy", mmap_mode="r"), X)
    flips = datasets.make_classification(3000, 20, flip_y=0.5, seed=9)[1]
    clean = datasets.make_classification(3000, 20, flip_y=0.0, seed=9)[1]
    assert 0.15 < (flips != clean).mean() < 0.35  # half flipped to a random class


def test_load_dataset_by_name(tmp_path, monkeypatch, madelon_dir):
    assert datasets.load_dataset("madelon", madelon_dir).X_train.shape == (2000, 500)
    monkeypatch.setenv("SPARSE_MLP_DATA_DIR", os.path.dirname(madelon_dir))
    assert datasets.load_dataset("madelon").X_test.shape == (600, 500)
    with pytest.raises(sm.InvalidInputError, match="unknown data set 'imagenet'"):
        datasets.load_dataset("imagenet")
    monkeypatch.delenv("SPARSE_MLP_DATA_DIR")
    with pytest.raises(sm.InvalidInputError, match="needs its files"):
        datasets.load_dataset("cifar10")


def test_data_sets_are_found_where_they_usually_are(tmp_path, monkeypatch):
    shared, debian = tmp_path / "shared" / "data", tmp_path / "usr-share-datasets"
    (debian / "fashion-mnist").mkdir(parents=True)
    (debian / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    roots = [str(shared), str(debian)]
    monkeypatch.delenv("SPARSE_MLP_DATA_DIR", raising=False)
    assert datasets.locate("fashion_mnist", roots) == str(debian / "fashion-mnist")
    (shared / "fashion-mnist").mkdir(parents=True)
    (shared / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    assert datasets.locate("fashion_mnist", roots) == str(shared / "fashion-mnist")  # the first root
    monkeypatch.setenv("SPARSE_MLP_DATA_DIR", str(tmp_path / "mine"))
    (tmp_path / "mine" / "higgs-subset").mkdir(parents=True)
    (tmp_path / "mine" / "higgs-subset" / "HIGGS_subset.csv").write_text("")
    assert datasets.locate("higgs", roots) == str(tmp_path / "mine" / "higgs-subset")
    monkeypatch.delenv("SPARSE_MLP_DATA_DIR")
    with pytest.raises(sm.InvalidInputError, match="looked in .*madelon.*usr-share-datasets/madelon"):
        datasets.locate("madelon", roots)


def test_the_higgs_subset_splits_as_the_benchmarks_do():
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "higgs-subset")
    if not os.path.isdir(shared):
        pytest.skip("../shared/data/higgs-subset is not present")
    split = datasets.load_higgs(shared)
    assert split.X_train.shape == (20_000, 28) and split.X_test.shape == (5_971, 28)
    again = datasets.load_higgs(os.path.join(shared, "HIGGS_subset.csv"), n_train=20_000, n_test=5_971)
    np.testing.assert_array_equal(split.X_test, again.X_test)
