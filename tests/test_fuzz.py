"""Fuzzing the public API and the compiled module's entry points (hypothesis).

Every call either works or raises one of the documented exceptions: a
:class:`sm.SparseMLPError` (``InvalidInputError`` is also a ``ValueError``,
``InsufficientMemoryError`` a ``MemoryError``) or ``TypeError`` for arguments
of the wrong kind (and ``OverflowError`` from the compiled module's argument
conversion: an integer out of its type's range, a sequence of the wrong
length). Anything else fails the test: a ``PanicException`` from the
core (a Rust panic), ``IndexError``, a bare ``ValueError``... and a crash
would end the test run. After each test the captured stderr must not hold a
Rust panic message. A call that is refused must leave the model unchanged.

The number of examples per test is ``SPARSE_MLP_FUZZ_EXAMPLES`` (default
100); the session's summary line "fuzz cases: N" counts the calls made.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sparse_mlp as sm
from sparse_mlp import _core

CASES: Counter = Counter()
ALLOWED = (sm.SparseMLPError, TypeError)
# The compiled module's arguments are converted by PyO3, which raises
# OverflowError for an integer outside the parameter's type (a negative size)
# and ValueError for a sequence of the wrong length.
CORE_ALLOWED = (*ALLOWED, OverflowError, ValueError)
EXAMPLES = int(os.environ.get("SPARSE_MLP_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def attempt(kind, fn, *args, allowed=ALLOWED, **kwargs):
    """Calls ``fn``; returns ("ok", result) or ("refused", error) for a
    documented exception; anything else propagates and fails the test."""
    try:
        result = fn(*args, **kwargs)
    except allowed as e:
        assert str(e), f"{type(e).__name__} without a message"
        CASES[kind, "refused"] += 1
        return "refused", e
    CASES[kind, "ok"] += 1
    return "ok", result


@pytest.fixture
def no_panic(capfd):
    yield
    err = capfd.readouterr().err
    assert "panicked" not in err and "RUST_BACKTRACE" not in err, err[-2000:]


# ---------------------------------------------------------------- strategies

WEIRD_INTS = st.sampled_from([0, -1, -(2**63), 2**31, 2**32, 2**32 - 1, 2**63, 2**64, 10**30])
WEIRD = st.one_of(
    st.none(), st.booleans(), st.text(max_size=3), st.floats(allow_nan=True, allow_infinity=True),
    WEIRD_INTS, st.just([1, 2]), st.just(object()), st.just(np.float32(1.5)), st.just(np.int64(3)),
)
FLOAT_ARG = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                      st.floats(-2, 2), WEIRD)

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.int64, np.uint8,
                          np.bool_, np.complex64, np.dtype("U2"), np.dtype("O")])


@st.composite
def arrays(draw, max_dims=3, side=7, shape=None, dtype=None):
    """Any array: dtype, shape (empty included), NaN/inf, layout, writability."""
    dtype = np.dtype(dtype or draw(DTYPES))
    if shape is None:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=side))
    if dtype.kind == "O":
        a = np.empty(shape, dtype=object)
        a.fill(draw(st.sampled_from([None, 1.0, "x"])))
    elif dtype.kind == "U":
        a = np.full(shape, "ab", dtype=dtype)
    else:
        a = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "f", "strided", "transposed"]))
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=0)[::2]
    elif layout == "transposed":
        a = np.ascontiguousarray(a.T).T
    if draw(st.booleans()):
        a.setflags(write=False)
    return a


@st.composite
def sparse_features(draw, n_features):
    """A scipy matrix of features, sometimes with index arrays edited out of
    range (which scipy's own conversions would write out of bounds with)."""
    import scipy.sparse as sp

    m = sp.random(draw(st.integers(1, 9)), n_features, density=0.5, dtype=np.float32,
                  format=draw(st.sampled_from(["csr", "csc", "coo"])), random_state=0)
    if m.nnz and draw(st.booleans()):
        index = m.row if m.format == "coo" else m.indices
        index[draw(st.integers(0, index.size - 1))] = draw(st.sampled_from([-1, 99, 2**31 - 1]))
    return m


@st.composite
def features(draw, n_features):
    """Mostly well-shaped feature arrays of any dtype and layout, sometimes anything."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(arrays(), WEIRD, sparse_features(n_features)))
    n = draw(st.integers(0, 12))
    f = draw(st.sampled_from([n_features, n_features, n_features, 0, n_features + 1]))
    dtype = draw(st.sampled_from([np.float32, np.float32, np.float64, np.int64, np.float16, np.bool_]))
    a = draw(arrays(shape=(n, f), dtype=dtype))
    if dtype in (np.float32, np.float64) and a.size and draw(st.booleans()):
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0)  # often finite, so training runs
    return a


@st.composite
def labels(draw, n, n_classes):
    if draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(arrays(max_dims=2), WEIRD))
    kind = draw(st.sampled_from(["good", "good", "range", "float", "str", "short"]))
    rng = np.random.default_rng(draw(st.integers(0, 99)))
    if kind == "good":
        return rng.integers(0, n_classes, n)
    if kind == "range":
        return rng.integers(-2, n_classes + 3, n)
    if kind == "float":
        return rng.integers(0, n_classes, n) + draw(st.sampled_from([0.0, 0.5, np.nan]))
    if kind == "str":
        return np.array(["a", "b"] * n)[:n]
    return rng.integers(0, n_classes, max(0, n - 1))


def small_model(seed=0):
    return sm.SparseMLP([6, 10, 3], epsilon=3, seed=seed)


def snapshot(model):
    """Everything a refused call must leave alone."""
    state = [tuple(np.copy(v) for k, v in sorted(model._net.layer_state(i).items())
                   if isinstance(v, np.ndarray)) for i in range(len(model.sizes) - 1)]
    return model.sizes, state, model._net.run_state, model.epochs_trained, len(model.history)


def assert_same(a, b):
    assert a[0] == b[0] and a[2:] == b[2:]
    for la, lb in zip(a[1], b[1]):
        for x, y in zip(la, lb):
            np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- the public API


def mix(data, good, bad, max_bad=2):
    """Keyword arguments drawn from ``good``, except up to ``max_bad`` of them
    drawn from ``bad``: each bad value meets otherwise valid calls, and some
    calls are entirely valid, so the success paths are fuzzed too."""
    chosen = data.draw(st.lists(st.sampled_from(sorted(bad)), max_size=max_bad, unique=True),
                       "corrupted")
    return {k: data.draw(bad[k] if k in chosen else good[k], k) for k in good}


def good_features(n_features, n=None):
    """Finite float32 features of any layout, ``n`` (a strategy) samples."""
    n = st.integers(1, 40) if n is None else n
    return n.flatmap(lambda k: arrays(shape=(k, n_features), dtype=np.float32)).map(
        lambda a: np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=-1.0).clip(-1e3, 1e3))


@FUZZ
@given(data=st.data())
def test_constructor(no_panic, data):
    good = {
        "sizes": st.lists(st.integers(1, 12), min_size=1, max_size=3).map(lambda h: [5, *h, 3]),
        "epsilon": st.one_of(st.none(), st.floats(0.1, 50)),
        "density": st.none(),
        "activation": st.sampled_from(["relu", "all_relu", "tanh", sm.AllReLU(0.3), sm.LeakyReLU(0.1)]),
        "dropout": st.floats(0, 0.9),
        "init": st.sampled_from(["he_uniform", "normal", "xavier_uniform"]),
        "seed": st.one_of(st.none(), st.integers(0, 2**64 - 1)),
        "loss": st.sampled_from(["cross_entropy", "mse"]),
        "distribution": st.sampled_from(["erk", "uniform"]),
    }
    bad = {
        "sizes": st.one_of(st.lists(st.one_of(st.integers(-2, 12), WEIRD_INTS, WEIRD), max_size=5),
                           WEIRD),
        "epsilon": FLOAT_ARG, "density": FLOAT_ARG,
        "activation": st.one_of(st.sampled_from(["nope", ""]), WEIRD,
                                st.lists(st.sampled_from(["relu", "sigmoid"]), max_size=4)),
        "dropout": FLOAT_ARG, "init": st.one_of(st.sampled_from(["x"]), WEIRD),
        "seed": st.one_of(st.integers(-5, -1), st.integers(2**64, 2**70), WEIRD),
        "loss": st.one_of(st.sampled_from(["hinge"]), WEIRD),
        "distribution": st.one_of(st.sampled_from(["er", ""]), WEIRD),
    }
    kw = mix(data, good, bad)
    outcome, model = attempt("constructor", sm.SparseMLP, kw.pop("sizes"), **kw)
    if outcome == "ok":
        assert model.n_connections >= 1
        X = np.zeros((2, model.n_features), np.float32)
        assert np.isfinite(model.predict_proba(X)).all()


@FUZZ
@given(data=st.data())
def test_fit(no_panic, data):
    model = small_model()
    n = data.draw(st.integers(1, 40), "n")
    good = {
        "X": good_features(6, st.just(n)), "y": st.just(np.arange(n) % 3),
        "epochs": st.integers(1, 2), "batch_size": st.integers(1, 50),
        "learning_rate": st.floats(1e-4, 0.3), "momentum": st.floats(0, 0.99),
        "weight_decay": st.floats(0, 1e-2), "nesterov": st.booleans(),
        "topology": st.one_of(st.none(), st.builds(sm.SET, st.floats(0, 1))),
        "pruning": st.one_of(st.none(), st.builds(sm.ImportancePruning, st.integers(1, 2),
                                                  st.integers(1, 2), st.floats(0, 90))),
        "validation_data": st.one_of(st.none(), st.tuples(good_features(6), st.just(np.arange(1)))
                                     .map(lambda v: (v[0], np.arange(v[0].shape[0]) % 3))),
        "shuffle": st.booleans(), "verbose": st.just(0),
    }
    bad = {
        "X": features(6), "y": labels(n, 3),
        "epochs": st.one_of(st.integers(-3, 0), WEIRD.filter(lambda v: not isinstance(v, int)
                                                             or isinstance(v, bool) or v < 3)),
        "batch_size": st.one_of(st.integers(-1, 0), WEIRD_INTS, WEIRD),
        "learning_rate": FLOAT_ARG, "momentum": FLOAT_ARG, "weight_decay": FLOAT_ARG,
        "nesterov": WEIRD, "topology": WEIRD, "pruning": WEIRD,
        "validation_data": st.one_of(WEIRD, st.tuples(features(6), labels(3, 3))),
        "shuffle": WEIRD, "verbose": st.one_of(st.integers(-2, 5), WEIRD),
    }
    kw = mix(data, good, bad)
    before = snapshot(model)
    outcome, result = attempt("fit", model.fit, kw.pop("X"), kw.pop("y"), **kw)
    if outcome == "refused" and not isinstance(result, sm.DivergenceError):
        assert_same(before, snapshot(model))
    elif outcome == "ok":
        assert model.epochs_trained == len(result) >= 1
        for i in range(len(model.sizes) - 1):
            assert np.isfinite(model._net.layer_state(i)["values"]).all()


@FUZZ
@given(data=st.data())
def test_inference(no_panic, data):
    model = small_model(1)
    n = data.draw(st.integers(1, 40), "n")
    good = {"X": good_features(6, st.just(n)), "y": st.just(np.arange(n) % 3),
            "batch_size": st.one_of(st.none(), st.integers(1, 50))}
    bad = {"X": features(6), "y": labels(n, 3),
           "batch_size": st.one_of(st.integers(-1, 0), WEIRD_INTS, WEIRD)}
    kw = mix(data, good, bad)
    X, y, batch_size = kw["X"], kw["y"], kw["batch_size"]
    before = snapshot(model)
    outcome, p = attempt("predict_proba", model.predict_proba, X, batch_size=batch_size)
    if outcome == "ok":
        assert p.shape == (X.shape[0], 3) and np.isfinite(p).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    attempt("predict", model.predict, X, batch_size=batch_size)
    attempt("evaluate", model.evaluate, X, y, batch_size=batch_size)
    attempt("score", model.score, X, y)
    attempt("memory_estimate", model.memory_estimate, batch_size)
    assert_same(before, snapshot(model))


@FUZZ
@given(zeta=FLOAT_ARG, percentile=FLOAT_ARG, every=st.one_of(st.integers(-1, 3), WEIRD),
       data=st.data())
def test_topology_strategies(no_panic, zeta, percentile, every, data):
    X, y = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32), np.arange(20) % 3
    for make in (lambda: sm.SET(zeta), lambda: sm.ImportancePruning(percentile=percentile, every=every),
                 lambda: sm.ReDo(tau=zeta, every_steps=every),
                 lambda: sm.NeuronRecycling(fraction=zeta, every_steps=every),
                 lambda: sm.ContinualBackprop(replacement_rate=zeta)):
        outcome, strategy = attempt("strategy", make)
        if outcome != "ok":
            continue
        model = small_model(2)
        kw = {"recycling": strategy} if not isinstance(strategy, (sm.SET, sm.ImportancePruning)) \
            else {"topology": strategy} if isinstance(strategy, sm.SET) else {"pruning": strategy}
        attempt("fit with strategy", model.fit, X, y, epochs=2, verbose=0, **kw)


# ---------------------------------------------------------------- untrusted files


def _valid_archive(fmt="npz"):
    model = small_model(3)
    X, y = np.random.default_rng(1).normal(size=(30, 6)).astype(np.float32), np.arange(30) % 3
    model.fit(X, y, epochs=1, verbose=0)
    buf = io.BytesIO()
    model._write_archive(buf, fmt)
    return buf.getvalue()


VALID = _valid_archive()
VALID_SAFETENSORS = _valid_archive("safetensors")


def _load_bytes(tmp_path_factory, raw, name="m.npz"):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(raw)
    outcome, model = attempt("load", sm.SparseMLP.load, path)
    if outcome == "ok":
        X = np.ones((2, model.n_features), np.float32)
        assert np.isfinite(model.predict_proba(X)).all()
    else:
        assert isinstance(model, (sm.CheckpointError, sm.InsufficientMemoryError)), repr(model)


@FUZZ
@given(cut=st.integers(0, len(VALID)), flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1),
                                                               st.integers(1, 255)), max_size=4))
def test_load_of_truncated_or_corrupted_bytes(no_panic, tmp_path_factory, cut, flips):
    raw = bytearray(VALID[:cut] if cut < len(VALID) else VALID)
    for pos, x in flips:
        if pos < len(raw):
            raw[pos] ^= x
    _load_bytes(tmp_path_factory, bytes(raw))


@FUZZ
@given(cut=st.integers(0, len(VALID_SAFETENSORS)),
       flips=st.lists(st.tuples(st.integers(0, len(VALID_SAFETENSORS) - 1), st.integers(1, 255)),
                      max_size=4))
def test_load_of_truncated_or_corrupted_safetensors(no_panic, tmp_path_factory, cut, flips):
    raw = bytearray(VALID_SAFETENSORS[:cut] if cut < len(VALID_SAFETENSORS) else VALID_SAFETENSORS)
    for pos, x in flips:
        if pos < len(raw):
            raw[pos] ^= x
    _load_bytes(tmp_path_factory, bytes(raw), "m.safetensors")


def _members():
    with np.load(io.BytesIO(VALID)) as z:
        return {k: z[k] for k in z.files}


MEMBERS = _members()


@FUZZ
@given(data=st.data())
def test_load_of_crafted_archives(no_panic, tmp_path_factory, data):
    """Valid zip or safetensors files whose content lies: wrong sizes,
    indices, dtypes, metadata."""
    arrays = dict(MEMBERS)
    meta = json.loads(bytes(arrays["meta"]).decode())
    for _ in range(data.draw(st.integers(0, 3))):
        what = data.draw(st.sampled_from(["array", "meta", "drop", "index", "nan"]))
        if what == "nan":
            key = data.draw(st.sampled_from([k for k in arrays if k.endswith(("values", "bias"))]))
            a = arrays[key].copy()
            if a.ndim == 1 and a.size and a.dtype.kind == "f":
                a[data.draw(st.integers(0, a.size - 1))] = data.draw(st.sampled_from([np.nan, np.inf]))
            arrays[key] = a
        elif what == "array":
            key = data.draw(st.sampled_from(sorted(arrays)))
            arrays[key] = data.draw(arrays_strategy)
        elif what == "index":
            key = data.draw(st.sampled_from([k for k in arrays if k.endswith(("row_idx", "col_ptr"))]))
            a = arrays[key].copy()
            values = [-1, 0, 5, 6, 10, 2**31, 2**32 - 1] if a.dtype.kind == "i" else [0, 5, 6, 10, 2**31]
            if a.ndim == 1 and a.size and a.dtype.kind in "iu":
                a[data.draw(st.integers(0, a.size - 1))] = data.draw(st.sampled_from(values))
            arrays[key] = a
        elif what == "drop":
            arrays.pop(data.draw(st.sampled_from(sorted(arrays))))
        else:
            field = data.draw(st.sampled_from(sorted(meta)))
            meta[field] = data.draw(st.one_of(
                st.integers(-3, 2**64), st.lists(st.integers(-1, 2**40), max_size=4), st.text(max_size=4),
                st.none(), st.floats(allow_nan=True), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                       max_size=2)))
            arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    if data.draw(st.booleans(), "as safetensors"):
        import safetensors.numpy

        text = bytes(np.asarray(arrays.pop("meta", np.zeros(0, np.uint8))).ravel()[:10**6]).decode(
            errors="replace")
        try:
            raw = safetensors.numpy.save({k: np.ascontiguousarray(a) for k, a in arrays.items()},
                                         metadata={"sparse_mlp": text})
        except Exception:  # a dtype safetensors cannot hold (objects, strings)
            assume(False)
        _load_bytes(tmp_path_factory, raw, "m.safetensors")
        return
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, a in arrays.items():
            with zf.open(k + ".npy", "w") as out:
                np.lib.format.write_array(out, np.asanyarray(a), allow_pickle=True)
    _load_bytes(tmp_path_factory, buf.getvalue())


arrays_strategy = arrays(max_dims=2, side=40)


# ---------------------------------------------------------------- the compiled module


def _layer_dicts(model):
    return [model._net.layer_state(i) for i in range(len(model.sizes) - 1)]


@FUZZ
@given(data=st.data())
def test_core_network_entry_points(no_panic, data):
    model = small_model(4)
    net = model._net
    any_array = arrays(max_dims=2, side=12)
    h = data.draw(st.one_of(st.integers(-1, 3), WEIRD_INTS))
    ids = data.draw(st.one_of(any_array, st.just(np.array([0, 0])), st.just(np.array([9, 1]))))
    calls = [
        ("pack_params", lambda: net.pack_params(data.draw(any_array))),
        ("unpack_params", lambda: net.unpack_params(data.draw(any_array))),
        ("gradient_step", lambda: net.gradient_step(data.draw(any_array), data.draw(any_array),
                                                    data.draw(any_array))),
        ("apply_packed_gradient", lambda: net.apply_packed_gradient(
            data.draw(any_array), data.draw(FLOAT_ARG), data.draw(FLOAT_ARG), data.draw(FLOAT_ARG))),
        ("train_epoch", lambda: net.train_epoch(
            data.draw(any_array), data.draw(any_array), data.draw(st.one_of(st.integers(-1, 9), WEIRD)),
            0.01, 0.9, 0.0, order=data.draw(st.one_of(st.none(), any_array)))),
        ("evaluate", lambda: net.evaluate(data.draw(any_array), data.draw(any_array),
                                          data.draw(st.one_of(st.none(), st.integers(-1, 9))))),
        ("gradients", lambda: net.gradients(data.draw(any_array), data.draw(any_array))),
        ("evolve_set", lambda: net.evolve_set(data.draw(FLOAT_ARG))),
        ("neuron_importance", lambda: net.neuron_importance(h)),
        ("neuron_magnitudes", lambda: net.neuron_magnitudes(h)),
        ("remove_neurons", lambda: net.remove_neurons(h, ids, data.draw(st.booleans()))),
        ("recycle_neurons", lambda: net.recycle_neurons(
            h, ids, data.draw(st.sampled_from(["initial", "zero", "x"])),
            data.draw(st.sampled_from(["reinit", "zero", "keep", "y"])),
            data.draw(st.one_of(st.integers(-1, 5), WEIRD_INTS)))),
        ("protect_neurons", lambda: net.protect_neurons(h, ids)),
        ("select_neurons", lambda: net.select_neurons(
            data.draw(any_array), data.draw(any_array), data.draw(st.sampled_from(["top", "bottom", "?"])),
            data.draw(FLOAT_ARG))),
        ("epoch_order", lambda: net.epoch_order(data.draw(st.one_of(st.integers(-1, 50), WEIRD_INTS)))),
        ("set_layer_values", lambda: net.set_layer_values(h, data.draw(any_array),
                                                          data.draw(st.one_of(st.none(), any_array)))),
        ("layer_state", lambda: net.layer_state(h)),
        ("training_bytes", lambda: net.training_bytes(data.draw(WEIRD_INTS))),
        ("midpoint_loss", lambda: net.midpoint_loss(data.draw(FLOAT_ARG), "mean", "l2")),
        ("track_activity", lambda: net.track_activity(True, data.draw(st.one_of(st.none(), FLOAT_ARG)))),
        ("reseed", lambda: net.reseed(data.draw(st.one_of(st.integers(-1, 2**64), WEIRD_INTS)))),
    ]
    for name, call in data.draw(st.lists(st.sampled_from(calls), min_size=1, max_size=6)):
        attempt(f"core.{name}", call, allowed=CORE_ALLOWED)
    # whatever was accepted, the network is still consistent and usable
    X = np.ones((3, net.sizes[0]), np.float32)
    p = net.predict_proba(X)
    assert p.shape == (3, net.sizes[-1])


@FUZZ
@given(data=st.data())
def test_core_constructors_and_functions(no_panic, data):
    any_array = arrays(max_dims=2, side=12)
    base = _layer_dicts(small_model(5))
    layers = []
    for d in base:
        d = dict(d)
        if data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(d)))
            d[key] = data.draw(st.one_of(any_array, WEIRD))
        layers.append(d)
    acts = data.draw(st.one_of(st.just([("all_relu", 0.6)]), st.lists(st.tuples(
        st.sampled_from(["relu", "leaky_relu", "x"]), st.floats(allow_nan=True)), max_size=2)))
    ints = st.one_of(st.integers(-1, 2**64), WEIRD_INTS)
    calls = [
        ("Network", lambda: _core.Network(
            data.draw(st.lists(st.one_of(st.integers(0, 12), WEIRD_INTS), max_size=4)),
            data.draw(st.lists(st.one_of(st.integers(0, 200), WEIRD_INTS), max_size=3)),
            acts, "cross_entropy", "softmax", data.draw(FLOAT_ARG), "he_uniform", 0)),
        ("from_state", lambda: _core.Network.from_state(
            layers, acts, data.draw(st.sampled_from(["cross_entropy", "mse", "?"])), "softmax",
            data.draw(FLOAT_ARG), "he_uniform", 1, data.draw(st.lists(ints, max_size=5)),
            data.draw(ints), data.draw(ints))),
        ("remap_values", lambda: _core.remap_values(*(data.draw(any_array) for _ in range(5)))),
        ("union_average", lambda: _core.union_average(
            [(d["col_ptr"], d["row_idx"], d["values"]) for d in layers[:1]] * data.draw(st.integers(0, 3))
            + [tuple(data.draw(any_array) for _ in range(3))] * data.draw(st.integers(0, 1)),
            data.draw(st.one_of(st.integers(-1, 8), WEIRD_INTS)), data.draw(st.one_of(st.integers(-1, 60),
                                                                                      WEIRD_INTS)))),
        ("er_nnz", lambda: _core.er_nnz(data.draw(FLOAT_ARG), data.draw(ints), data.draw(ints))),
        ("parameter_bytes", lambda: _core.parameter_bytes(data.draw(st.lists(ints, max_size=3)),
                                                          data.draw(st.lists(ints, max_size=3)))),
        ("connection_counts", lambda: sm.connection_counts(
            data.draw(st.lists(st.one_of(st.integers(-1, 50), WEIRD_INTS), max_size=4)),
            data.draw(st.one_of(st.none(), FLOAT_ARG)))),
    ]
    for name, call in data.draw(st.lists(st.sampled_from(calls), min_size=1, max_size=4)):
        # connection_counts is the public API's: no conversion errors
        outcome, result = attempt(f"core.{name}", call,
                                  allowed=ALLOWED if name == "connection_counts" else CORE_ALLOWED)
        if name == "from_state" and outcome == "ok":
            assert result.predict_proba(np.ones((2, result.sizes[0]), np.float32)).shape[0] == 2


def _recycling_network():
    """A core network with everything recycling keeps in flight: SET
    protection, a pending interpolation, activity statistics."""
    net = sm.SparseMLP([6, 10, 8, 3], epsilon=3, seed=6)._net
    X, y = np.ones((20, 6), np.float32), np.arange(20) % 3
    net.track_activity(True, 0.9)
    net.train_epoch(X, y, 5, 0.01, 0.9, 0.0)
    net.recycle_neurons(0, np.array([1, 2]), "initial", "reinit", 20)
    net.protect_neurons(1, np.array([3]))
    net.train_epoch(X, y, 5, 0.01, 0.9, 0.0)
    return net, X, y


def _recycling_snapshot(net):
    state = net.recycling_state()
    layers = [net.layer_state(i) for i in range(len(net.sizes) - 1)]
    return state, layers


@FUZZ
@given(data=st.data())
def test_core_recycling_state(no_panic, data):
    # set_recycling_state takes back a checkpoint's dict of arrays: each draw
    # damages a valid one (keys dropped, arrays replaced by anything, values
    # shifted out of range or made NaN, unknown keys) or is not a dict at all
    net, X, y = _recycling_network()
    valid = net.recycling_state()
    state = dict(valid)
    for _ in range(data.draw(st.integers(0, 3), "changes")):
        key = data.draw(st.sampled_from(sorted(valid)), "key")
        change = data.draw(st.sampled_from(["drop", "any", "shift", "nan", "grow", "shrink",
                                            "negate", "unknown"]), "change")
        a = valid[key]
        if change == "drop":
            state.pop(key, None)
        elif change == "any":
            state[key] = data.draw(st.one_of(arrays(max_dims=2, side=30), WEIRD), "value")
        elif change == "shift":
            state[key] = a + data.draw(st.sampled_from([1, 7, 1000, 2**31, 2**40]), "by")
        elif change == "nan" and a.dtype.kind == "f" and a.size:
            a = a.copy()
            a[data.draw(st.integers(0, a.size - 1), "at")] = data.draw(
                st.sampled_from([np.nan, np.inf, -np.inf, np.finfo(a.dtype).max]), "bad float")
            state[key] = a
        elif change == "grow":
            state[key] = np.append(a, a[:1] if a.size else np.zeros(1, a.dtype))
        elif change == "shrink":
            state[key] = a[:-1]
        elif change == "negate":
            state[key] = -a - 1
        elif change == "unknown":
            state[data.draw(st.text(max_size=4), "name")] = a
    if data.draw(st.integers(0, 9), "not a dict") == 0:
        state = data.draw(st.one_of(WEIRD, st.just(list(valid.items()))), "non-dict")
    before = _recycling_snapshot(net)
    outcome, error = attempt("core.set_recycling_state", net.set_recycling_state, state,
                             allowed=CORE_ALLOWED)
    after = _recycling_snapshot(net)
    if outcome == "refused":
        # nothing changed
        for k in before[0]:
            np.testing.assert_array_equal(before[0][k], after[0][k], err_msg=k)
        for la, lb in zip(before[1], after[1]):
            for k in la:
                np.testing.assert_array_equal(la[k], lb[k], err_msg=k)
    # accepted or not, the network still trains (or reports that huge but
    # finite accepted deltas made it diverge) and predicts
    trained, _ = attempt("core.train_epoch", net.train_epoch, X, y, 5, 0.01, 0.9, 0.0)
    p = net.predict_proba(X)
    assert p.shape == (20, 3)
    if outcome == "refused":
        assert trained == "ok" and np.isfinite(p).all()


@FUZZ
@given(n=st.one_of(st.integers(-2, 4), st.integers(4097, 2**64), WEIRD))
def test_thread_count(no_panic, n):
    before = sm.get_num_threads()
    try:
        outcome, _ = attempt("set_num_threads", sm.set_num_threads, n)
        if outcome == "ok":
            assert sm.get_num_threads() == n
    finally:
        sm.set_num_threads(before)


def _scipy_layers(data):
    """Weight matrices for from_scipy: mostly a valid chain, sometimes
    damaged (shape, dtype, NaN, duplicate or out-of-range indices, dense)."""
    import scipy.sparse as sp

    sizes = data.draw(st.lists(st.integers(1, 8), min_size=2, max_size=4), "sizes")
    mats = [sp.random(a, b, density=0.5, format=data.draw(st.sampled_from(["csr", "csc", "coo"]), "fmt"),
                      dtype=np.float32, random_state=i) for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    for _ in range(data.draw(st.sampled_from([0, 0, 1]), "damage")):
        i = data.draw(st.integers(0, len(mats) - 1), "which")
        m = mats[i].tocoo()
        how = data.draw(st.sampled_from(["shape", "dtype", "nan", "duplicate", "index", "indptr",
                                         "dense", "empty", "weird"]), "how")
        if how == "shape":
            mats[i] = sp.random(m.shape[0] + 1, m.shape[1], density=0.5, format="csr")
        elif how == "dtype":
            mats[i] = m.astype(data.draw(st.sampled_from([np.float64, np.int64, np.complex64, bool])))
        elif how == "nan" and m.nnz:
            m.data[0] = data.draw(st.sampled_from([np.nan, np.inf]))
            mats[i] = m
        elif how == "duplicate" and m.nnz:
            mats[i] = sp.coo_matrix((np.r_[m.data, m.data[:1]], (np.r_[m.row, m.row[:1]],
                                                                  np.r_[m.col, m.col[:1]])), m.shape)
        elif how == "index" and m.nnz:
            # index arrays edited by hand, which scipy does not check (and its
            # conversions trust: out of range, they write out of bounds)
            fmt = data.draw(st.sampled_from(["coo", "csr", "csc"]), "format")
            bad = m.asformat(fmt)
            if fmt == "coo":
                arr = bad.row if data.draw(st.booleans(), "axis") else bad.col
            else:
                arr = bad.indices
            arr[data.draw(st.integers(0, arr.size - 1), "at")] = data.draw(
                st.sampled_from([-1, 99, 2**31 - 1]), "index")
            mats[i] = bad
        elif how == "indptr" and m.nnz:
            bad = m.tocsr()
            bad.indptr[data.draw(st.integers(0, bad.indptr.size - 1), "at")] = data.draw(
                st.sampled_from([-1, bad.nnz + 5, 2**31 - 1]), "pointer")
            mats[i] = bad
        elif how == "dense":
            mats[i] = m.toarray()
        elif how == "empty":
            mats[i] = sp.csr_matrix(m.shape, dtype=np.float32)
        elif how == "weird":
            mats[i] = data.draw(st.one_of(arrays(max_dims=2), WEIRD))
    return mats


@FUZZ
@given(data=st.data())
def test_other_public_functions(no_panic, tmp_path_factory, data):
    # from_scipy, the data helpers, activations, the metrics reader, the
    # scikit-learn estimator and input_connectivity, with random arguments
    import scipy.sparse as sp

    from sparse_mlp import datasets, plots

    any_array = arrays(max_dims=3, side=9)
    calls = [
        ("from_scipy", lambda: sm.SparseMLP.from_scipy(
            _scipy_layers(data), data.draw(st.one_of(st.none(), st.lists(any_array, max_size=3)), "b"),
            activation=data.draw(st.sampled_from(["relu", "all_relu", "nope", sm.AllReLU(0.3)])),
            dropout=data.draw(st.one_of(st.floats(0, 0.5), FLOAT_ARG)),
            seed=data.draw(st.one_of(st.none(), st.integers(0, 9), WEIRD_INTS)))),
        ("make_classification", lambda: datasets.make_classification(
            *(data.draw(st.one_of(st.integers(1, 30), st.integers(-1, 0), WEIRD_INTS.filter(
                lambda v: v <= 0), WEIRD.filter(lambda v: not isinstance(v, int) or v < 100)), k)
              for k in ("n_samples", "n_features", "n_informative", "n_redundant", "n_classes",
                        "n_clusters_per_class")),
            class_sep=data.draw(st.one_of(st.floats(0, 3), FLOAT_ARG)),
            flip_y=data.draw(st.one_of(st.floats(0, 1), FLOAT_ARG)),
            seed=data.draw(st.one_of(st.none(), st.integers(0, 9), WEIRD_INTS, WEIRD)))),
        ("standardize", lambda: datasets.standardize(*data.draw(st.lists(any_array, min_size=1,
                                                                          max_size=3), "arrays"))),
        ("feature_scaling", lambda: datasets.feature_scaling(data.draw(any_array))),
        ("encode_labels", lambda: datasets.encode_labels(*data.draw(st.lists(any_array, max_size=3)))),
        ("read_metrics", lambda: sm.read_metrics(
            data.draw(st.sampled_from([str(tmp_path_factory.mktemp("m")), "/nonexistent/m",
                                       __file__])), data.draw(st.one_of(st.booleans(), WEIRD)))),
        ("activations", lambda: sm.SparseMLP(
            [4, 5, 2], activation=data.draw(st.one_of(
                st.builds(sm.AllReLU, st.one_of(FLOAT_ARG, st.lists(FLOAT_ARG, max_size=3))),
                st.builds(sm.LeakyReLU, FLOAT_ARG))), seed=0)),
        ("input_connectivity", lambda: plots.input_connectivity(small_model(7), data.draw(st.one_of(
            st.none(), st.lists(st.integers(-1, 7), max_size=4).map(tuple), WEIRD)))),
        ("SparseMLPClassifier", lambda: sm.SparseMLPClassifier(**{
            k: data.draw(v, k) for k, v in {
                "hidden_layer_sizes": st.one_of(st.just((8,)), st.lists(st.one_of(
                    st.integers(-1, 8), WEIRD_INTS), max_size=2), WEIRD),
                "max_iter": st.one_of(st.integers(1, 2), st.integers(-1, 0), WEIRD.filter(
                    lambda v: not isinstance(v, int) or v < 3)),
                "learning_rate_init": st.one_of(st.floats(1e-3, 0.1), FLOAT_ARG),
                "learning_rate": st.one_of(st.just("constant"), st.just("adaptive"), WEIRD),
                "alpha": st.one_of(st.floats(0, 1e-3), FLOAT_ARG),
                "all_relu_slope": st.one_of(st.floats(0, 1), FLOAT_ARG),
                "importance_pruning": st.one_of(st.none(), st.just((1, 1, 10.0)), WEIRD),
                "random_state": st.one_of(st.none(), st.integers(0, 9), WEIRD),
            }.items()}).fit(*data.draw(st.sampled_from([
                (np.random.default_rng(0).normal(size=(20, 5)), np.arange(20) % 2),
                (np.random.default_rng(0).normal(size=(20, 5)), np.array(["a", "b"] * 10)),
                (sp.random(20, 5, density=0.3, format="csr"), np.arange(20) % 2),
                (np.full((20, 5), np.nan), np.arange(20) % 2),
                (np.zeros((0, 5)), np.zeros(0)),
                (np.zeros((20, 5)), np.zeros(19)),
            ]), "Xy"))),
    ]
    for name, call in data.draw(st.lists(st.sampled_from(calls), min_size=1, max_size=3)):
        # the estimator follows scikit-learn, whose checks raise ValueError
        outcome, result = attempt(name, call, allowed=(*ALLOWED, ValueError)
                                  if name == "SparseMLPClassifier" else ALLOWED)
        if outcome == "ok" and name == "from_scipy":
            X = np.zeros((2, result.n_features), np.float32)
            assert np.isfinite(result.predict_proba(X)).all()


def test_the_fuzz_suite_ran_many_cases():
    """Run last in this module: the suite made calls of every kind."""
    assert sum(CASES.values()) >= 10 * EXAMPLES, CASES


# ---------------------------------------------------------------- untrusted data files


def _data_templates():
    """A small valid file of each format the loaders read."""
    import gzip
    import pickle
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3)).astype(np.float32)
    idx = bytes([0, 0, 0x08, 2]) + (4).to_bytes(4, "big") + (3).to_bytes(4, "big") + \
        rng.integers(0, 255, 12, dtype=np.uint8).tobytes()
    csv = "a,b,c,label\n" + "\n".join(",".join(f"{v:.3f}" for v in row) + ",x" for row in X) + "\n"
    svm = "\n".join(f"{i % 2} 1:{row[0]:.3f} 3:{row[2]:.3f}" for i, row in enumerate(X)) + "\n"
    npy, npz = io.BytesIO(), io.BytesIO()
    np.save(npy, X)
    np.savez(npz, X=X, y=np.arange(4))
    cifar = pickle.dumps({b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8),
                          b"labels": [0, 1, 2, 3]}, protocol=2)
    return {"idx": idx, "idx.gz": gzip.compress(idx), "csv": csv.encode(), "svmlight": svm.encode(),
            "npy": npy.getvalue(), "npz": npz.getvalue(), "cifar": cifar}


DATA = _data_templates()


def _readers():
    from sparse_mlp import formats
    return {"idx": formats.read_idx, "idx.gz": formats.read_idx, "csv": formats.read_csv,
            "svmlight": formats.read_svmlight, "npy": formats.read_arrays,
            "npz": formats.read_arrays, "cifar": formats.read_cifar_batch}


@FUZZ
@given(data=st.data())
def test_data_files_truncated_corrupted_or_crafted(no_panic, tmp_path_factory, data):
    kind = data.draw(st.sampled_from(sorted(DATA)), "kind")
    raw = bytearray(DATA[kind])
    how = data.draw(st.sampled_from(["as is", "cut", "flip", "insert", "random", "crafted"]), "how")
    if how == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif how == "insert":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.sampled_from([b"nan", b"1e39", b":", b"\x00", b"999999999999:1",
                                                b",,", b"\n", b"-1:2", "é".encode()]))
    elif how == "random":
        raw = bytearray(data.draw(st.binary(max_size=200)))
    elif how == "crafted" and kind.startswith("idx"):
        raw = bytearray(DATA["idx"])  # a header promising a huge shape
        raw[4:8] = data.draw(st.sampled_from([2**31, 2**32 - 1, 0, 5])).to_bytes(4, "big")
    elif how == "crafted" and kind == "svmlight":
        raw = f"1 {data.draw(st.sampled_from([2**31, 10**12, 10**30]))}:1.0\n".encode()
    path = tmp_path_factory.mktemp("data") / f"f.{kind.split('.')[0]}"
    path.write_bytes(bytes(raw))
    outcome, result = attempt(f"read {kind}", _readers()[kind], path)
    if outcome == "refused":
        assert isinstance(result, (sm.InvalidInputError, sm.InsufficientMemoryError)), repr(result)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    import pickle

    from sparse_mlp import formats

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}))
    with pytest.raises(sm.InvalidInputError):
        formats.read_cifar_batch(path)
    assert not (tmp_path / "pwned").exists()


def test_metadata_that_is_an_integer_is_refused_without_allocating(tmp_path):
    """``bytes(n)`` of a crafted integer would allocate n bytes (fuzz finding)."""
    arrays = dict(MEMBERS, meta=np.array(2**40))
    np.savez(tmp_path / "bomb.npz", **arrays)
    with pytest.raises(sm.CheckpointError, match="metadata is not a byte string"):
        sm.SparseMLP.load(tmp_path / "bomb.npz")


@pytest.mark.parametrize("fmt, damage", [("csr", "index"), ("csc", "index"), ("coo", "index"),
                                         ("csr", "pointer")])
def test_scipy_input_with_out_of_range_indices_is_refused(fmt, damage):
    # scipy does not check index arrays edited by hand, and its C++ conversion
    # (toarray, tocsc) then writes out of bounds: this crashed the interpreter
    import scipy.sparse as sp

    m = sp.random(3, 6, density=0.5, format=fmt, dtype=np.float32, random_state=0)
    if damage == "pointer":
        m.indptr[-1] = -1  # (scipy's own check_format then checks nothing)
    else:
        (m.col if fmt == "coo" else m.indices)[0] = 2**31 - 1
    model = small_model()
    with pytest.raises(sm.InvalidInputError, match="not a valid sparse matrix"):
        model.predict(m)
    w2 = sp.random(6, 3, density=0.5, format="csr", dtype=np.float32, random_state=1)
    with pytest.raises(sm.InvalidInputError, match="weights\\[0\\] is not a valid sparse matrix"):
        sm.SparseMLP.from_scipy([m, w2])
    with pytest.raises(sm.InvalidInputError, match="not a valid sparse matrix"):
        sm.datasets.standardize(m)
