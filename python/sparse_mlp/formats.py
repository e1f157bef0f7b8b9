"""Readers of the file formats data sets come in: IDX (MNIST, Fashion-MNIST),
the CIFAR python batches, CSV (plain or gzipped), .npy/.npz and svmlight.

Every reader checks sizes against the bytes actually there and raises
:class:`InvalidInputError` naming the file and the problem; none executes code
from a file (the CIFAR pickles go through an unpickler that only rebuilds
numpy arrays, bytes, lists and dicts).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import pickle
import tokenize
import warnings
import zipfile
import zlib
from typing import IO, Any

import numpy as np

from .errors import InsufficientMemoryError, InvalidInputError
from .memory import require

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def open_maybe_gzip(path: str) -> IO[bytes]:
    """``path`` opened for binary reading, decompressed when it is gzip data
    (told by its first bytes, not its name)."""
    if not os.path.isfile(path):
        raise InvalidInputError(f"file not found: {path}")
    f = open(path, "rb")
    if f.read(2) == _GZIP_MAGIC:
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


def _read_all(path: str) -> bytes:
    with open_maybe_gzip(path) as f:
        try:
            return f.read()
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise InvalidInputError(f"{path}: corrupted gzip data ({e})") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not, as a numpy array of its
    native dtype and shape."""
    path = os.fspath(path)
    data = _read_all(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise InvalidInputError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise InvalidInputError(f"{path}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise InvalidInputError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = header + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(data) != expected:
        raise InvalidInputError(
            f"{path}: the header promises shape {shape} ({expected} bytes) but the file has "
            f"{len(data)} bytes (truncated or not an IDX file)"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------- pickles


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    import codecs

    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; refuses every other class,
    so a crafted file cannot run code."""

    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def read_safe_pickle(path: str) -> Any:
    """A pickle that holds only numpy arrays, numbers, bytes, strings, lists
    and dicts (such as a CIFAR batch), read without executing code."""
    data = _read_all(path)
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            LookupError, OverflowError, MemoryError) as e:
        raise InvalidInputError(f"{path} is not a readable data pickle: {e}") from None


def read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10/100 python batch: (uint8 images (n, 3072), int64 labels)."""
    batch = read_safe_pickle(path)
    if not isinstance(batch, dict):
        raise InvalidInputError(f"{path} is not a CIFAR batch (a dict was expected)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    labels = batch.get("labels", batch.get("fine_labels"))
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or labels is None:
        raise InvalidInputError(f"{path} is not a CIFAR batch (no 'data' array and 'labels')")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{path}: the CIFAR labels are not integers") from None
    if data.dtype != np.uint8 or data.ndim != 2 or labels.shape != (data.shape[0],):
        raise InvalidInputError(
            f"{path}: CIFAR data must be uint8 (n, 3072) with n labels; got {data.dtype} "
            f"{data.shape} and {labels.shape[0]} labels"
        )
    return data, labels


# ---------------------------------------------------------------- tables


def _label_index(header: list[str] | None, label: int | str, n_columns: int, path: str) -> int:
    if isinstance(label, str):
        if header is None or label not in header:
            raise InvalidInputError(f"{path} has no column named {label!r}"
                                    + (f" (columns: {header[:10]}...)" if header else " (no header row)"))
        return header.index(label)
    index = label + n_columns if label < 0 else label
    if not 0 <= index < n_columns:
        raise InvalidInputError(f"{path} has {n_columns} columns; there is no label column {label} "
                                f"(an index counts from 0 to {n_columns - 1}, or from -1 at the end; "
                                "or give a header name)")
    return index


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_line(line: str, delimiter: str) -> list[str]:
    """The fields of a table's line. Blank-separated tables split on runs of
    blanks (leading and trailing blanks are no field, as in the UCI files);
    a trailing tab ends a tab-separated line without adding a column."""
    line = line.strip("\r\n")
    if delimiter == " ":
        return line.split()
    fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
    while delimiter == "\t" and len(fields) > 1 and not fields[-1].strip():
        fields.pop()
    return fields


def read_csv(path: str | os.PathLike, label: int | str | None = -1, delimiter: str | None = None,
             header: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A CSV table (gzipped or not): features as float32 and the raw label
    column (numbers or strings). ``label`` is the label column's index or
    name, or None when there is none; ``delimiter`` and ``header`` are
    guessed from the first line unless given. Blank-separated tables (such
    as the UCI ``.data`` files, whose lines end in a blank) are read too.
    Errors name the line and column, both counted from 1."""
    path = os.fspath(path)
    with open_maybe_gzip(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        try:
            first = text.readline()
            if not first.strip():
                raise InvalidInputError(f"{path} is empty")
            if delimiter is None:
                delimiter = max([",", ";", "\t", " "], key=first.strip().count)
            fields = _split_line(first, delimiter)
            if header is None:
                # A first line of numbers (labels may be words) is data.
                skip = label % len(fields) if isinstance(label, int) else None
                header = isinstance(label, str) or not all(
                    _is_number(v) for i, v in enumerate(fields) if i != skip)
            names = [f.strip() for f in fields] if header else None
            column = None if label is None else _label_index(names, label, len(fields), path)
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as e:
            raise InvalidInputError(f"{path} is not a readable text table: {e}") from None
    # numpy's C parser, not Python lists: a microarray table has ~10^8 fields.
    features = [j for j in range(len(fields)) if j != column]
    X = _load_columns(path, features, np.float64, delimiter, header)
    if X.shape[0] == 0:
        raise InvalidInputError(f"{path} has no data rows")
    labels = None if column is None else _load_columns(path, [column], str, delimiter, header)[:, 0]
    return X.astype(np.float32), labels


def _load_columns(path: str, columns: list[int], dtype: Any, delimiter: str, header: bool) -> np.ndarray:
    with open_maybe_gzip(path) as raw, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
        try:
            table = np.loadtxt(raw, delimiter=None if delimiter == " " else delimiter,
                               skiprows=1 if header else 0, usecols=columns, dtype=dtype, ndmin=2,
                               encoding="utf-8", quotechar='"')
        except (ValueError, UnicodeDecodeError, OSError, EOFError) as e:
            raise InvalidInputError(_table_problem(path, columns, dtype, delimiter, header, e)) from None
    return np.char.strip(table) if dtype is str else table


def _table_problem(path: str, columns: list[int], dtype: Any, delimiter: str, header: bool,
                   error: Exception) -> str:
    """Where numpy's parser failed, found again line by line (numpy counts
    rows from 0 in some messages and from 1 in others): line and column
    from 1, as an editor shows them."""
    need = max(columns) + 1
    try:
        with open_maybe_gzip(path) as raw:
            for lineno, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", newline=""), 1):
                if (header and lineno == 1) or not line.strip():
                    continue
                fields = _split_line(line, delimiter)
                if len(fields) < need:
                    return (f"{path}, line {lineno}: {len(fields)} columns where the table has "
                            f"{need} or more")
                if dtype is not str:
                    for j in columns:
                        if not _is_number(fields[j]):
                            return (f"{path}, line {lineno}, column {j + 1}: {fields[j].strip()!r} is "
                                    "not a number")
    except (UnicodeDecodeError, OSError, EOFError, csv.Error, gzip.BadGzipFile, zlib.error) as e:
        return f"{path} is not a readable text table: {e}"
    return f"{path} is not a readable table: {error}"


def read_svmlight(path: str | os.PathLike, n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An svmlight/libsvm file (``label index:value ...``, 1-based indices,
    gzipped or not) as dense float32 features and the raw labels."""
    path = os.fspath(path)
    labels: list[str] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    with open_maybe_gzip(path) as raw:
        try:
            for lineno, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                labels.append(parts[0])
                for item in parts[1:]:
                    if item.startswith("qid:"):
                        continue
                    key, sep, value = item.partition(":")
                    try:
                        index, v = int(key), float(value)
                    except ValueError:
                        raise InvalidInputError(
                            f"{path}, line {lineno}: {item!r} is not index:value") from None
                    if not sep or index < 1:
                        raise InvalidInputError(f"{path}, line {lineno}: feature index {key} must be >= 1")
                    rows.append(len(labels) - 1)
                    cols.append(index - 1)
                    vals.append(v)
        except (UnicodeDecodeError, OSError, EOFError) as e:
            raise InvalidInputError(f"{path} is not a readable svmlight file: {e}") from None
    if not labels:
        raise InvalidInputError(f"{path} has no samples")
    width = max(cols, default=-1) + 1
    if n_features is not None:
        if width > n_features:
            raise InvalidInputError(f"{path} uses feature {width} but n_features is {n_features}")
        width = n_features
    if width > 2**32 - 1:
        raise InvalidInputError(f"{path} uses feature index {width}, beyond the 2**32 - 1 features "
                                "a model can have")
    require(4 * len(labels) * max(width, 1),
            f"reading {path} as {len(labels)} samples x {width} dense features")
    X = np.zeros((len(labels), max(width, 1)), dtype=np.float32)
    X[rows, cols] = vals
    return X, np.array(labels)


# What reading a truncated, corrupted or crafted .npy/.npz can raise: numpy
# parses .npy headers with Python's tokenizer (SyntaxError, TokenError), and
# zipfile refuses unknown versions and methods with NotImplementedError.
UNREADABLE_ARCHIVE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, LookupError,
                      SyntaxError, tokenize.TokenError, TypeError, OverflowError,
                      NotImplementedError)


def describe_file(path: str) -> str:
    """What a file is, told by its first bytes: for messages about a file that
    is not what was expected."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"a file that cannot be read ({e.strerror})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
            return "a damaged zip archive"
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        entries = "1 entry" if len(names) == 1 else f"{len(names)} entries"
        return f"a zip archive (an .npz) holding {entries} ({shown})"
    if head.startswith(b"\x93NUMPY"):
        return "a single numpy array (.npy), not an archive"
    if head.startswith(_GZIP_MAGIC):
        return "gzip-compressed data"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "a Python pickle"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3:  # a character cut at the end of the sample
            return "a text file"
    return "a binary file of an unknown kind"


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a .npy (as ``"X"``) or .npz file, without pickled objects."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InvalidInputError(f"file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"X": loaded}
        with loaded as z:
            return {k: z[k] for k in z.files}
    except MemoryError as e:
        raise InsufficientMemoryError(f"{path}: its arrays do not fit in memory ({e})") from None
    except UNREADABLE_ARCHIVE as e:
        raise InvalidInputError(f"{path} is not a readable .npy/.npz file without objects: {e}") from None
