"""scikit-learn estimator, scipy export/import, pickling."""

import copy
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import sparse_mlp as sm
from conftest import blobs, dense_layers
from reference import loss_and_grads

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from sparse_mlp.estimator import SparseMLPClassifier, SparseMLPRegressor  # noqa: E402


def _expected_failures(estimator):
    # Mini-batch SGD over shuffled samples: a sample of weight 2 is not the
    # same run as that sample twice (scikit-learn expects the same for
    # MLPClassifier's stochastic solvers to fail too).
    return {"check_sample_weight_equivalence_on_dense_data":
            "stochastic mini-batches: a weight of 2 is not a repeated sample"}


@parametrize_with_checks([SparseMLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0),
                          SparseMLPRegressor(hidden_layer_sizes=(32,), max_iter=20, learning_rate_init=0.01,
                                             random_state=0)],
                         expected_failed_checks=_expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_and_grid_search():
    X, y = blobs(300, 10, 3, seed=4)
    labels = np.array(["red", "green", "blue"])[y]
    search = GridSearchCV(
        make_pipeline(StandardScaler(), SparseMLPClassifier(max_iter=15, random_state=0)),
        {"sparsemlpclassifier__hidden_layer_sizes": [(16,), (64, 64)],
         "sparsemlpclassifier__learning_rate_init": [0.01, 0.05]},
        cv=3,
    )
    search.fit(X, labels)
    assert set(search.cv_results_["params"][0]) == {"sparsemlpclassifier__hidden_layer_sizes",
                                                    "sparsemlpclassifier__learning_rate_init"}
    assert len(search.cv_results_["mean_test_score"]) == 4
    assert search.best_score_ > 0.8
    assert set(search.predict(X)) <= {"red", "green", "blue"}
    best = search.best_estimator_[-1]
    assert best.model_.sizes[1:-1] == list(search.best_params_["sparsemlpclassifier__hidden_layer_sizes"])


def test_params_clone_pickle_and_determinism():
    X, y = blobs(200, 10, 3, seed=5)
    clf = SparseMLPClassifier(hidden_layer_sizes=(40,), max_iter=10, random_state=3)
    assert clf.get_params()["hidden_layer_sizes"] == (40,)
    clf.set_params(learning_rate_init=0.02)
    assert clf.learning_rate_init == 0.02 and clone(clf).get_params() == clf.get_params()
    clf.fit(X, y)
    again = clone(clf).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), again.predict_proba(X))
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_proba(X), restored.predict_proba(X))
    assert clf.score(X, y) == restored.score(X, y) > 0.8
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])


def test_estimator_names_follow_scikit_learn():
    X, y = blobs(200, 10, 3, seed=5)
    base = dict(hidden_layer_sizes=(24,), random_state=1)
    clf = SparseMLPClassifier(max_iter=3, alpha=1e-3, learning_rate_init=0.02, all_relu_slope=0.4,
                              **base).fit(X, y)
    assert clf.n_iter_ == 3 and clf.model_.sizes == [10, 24, 3]
    assert clf.model_._net.activations == [("leaky", pytest.approx(-0.4))]
    # the old names still work, with a DeprecationWarning, and mean the same
    with pytest.warns(DeprecationWarning, match="max_iter"):
        old = SparseMLPClassifier(epochs=3, alpha=1e-3, learning_rate_init=0.02, all_relu_slope=0.4,
                                  **base).fit(X, y)
    np.testing.assert_array_equal(old.predict_proba(X), clf.predict_proba(X))
    with pytest.warns(DeprecationWarning) as caught:
        old = SparseMLPClassifier(max_iter=3, weight_decay=1e-3, learning_rate=0.02, all_relu_slope=0.4,
                                  **base).fit(X, y)
    assert sorted("alpha" in str(w.message) for w in caught) == [False, True]  # and learning_rate_init
    np.testing.assert_array_equal(old.predict_proba(X), clf.predict_proba(X))
    # alpha is the L2 penalty now; a slope-sized value is flagged
    with pytest.warns(UserWarning, match="all_relu_slope"):
        SparseMLPClassifier(max_iter=1, alpha=0.6, **base).fit(X, y)
    with pytest.raises(ValueError, match="learning_rate must be 'constant', 'invscaling', 'adaptive'"):
        SparseMLPClassifier(max_iter=1, learning_rate="cosine", **base).fit(X, y)
    assert SparseMLPClassifier(max_iter=1, batch_size="auto", **base).fit(X, y).n_iter_ == 1


def test_warm_start_continues_the_same_model():
    X, y = blobs(200, 10, 3, seed=5)
    warm = SparseMLPClassifier(hidden_layer_sizes=(24,), max_iter=2, random_state=1, warm_start=True)
    warm.fit(X, y)
    first = warm.model_
    warm.fit(X, y)
    assert warm.model_ is first and first.epochs_trained == 4
    whole = SparseMLPClassifier(hidden_layer_sizes=(24,), max_iter=4, random_state=1).fit(X, y)
    np.testing.assert_array_equal(warm.predict_proba(X), whole.predict_proba(X))
    cold = SparseMLPClassifier(hidden_layer_sizes=(24,), max_iter=2, random_state=1).fit(X, y)
    cold.fit(X, y)
    assert cold.model_.epochs_trained == 2
    with pytest.raises(ValueError, match="classes"):
        warm.fit(X, np.where(y == 0, 5, y))


def test_model_pickle_and_deepcopy_keep_the_training_state():
    X, y = blobs(100, 10, 3)
    model = sm.SparseMLP([10, 30, 3], epsilon=4, seed=2)
    model.fit(X, y, epochs=2, verbose=0)
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert other.history == model.history and other._net.run_state == model._net.run_state
        model_copy = copy.deepcopy(model)
        model_copy.fit(X, y, epochs=1, verbose=0)
        other.fit(X, y, epochs=1, verbose=0)
        for a, b in zip(model_copy.to_scipy(), other.to_scipy()):
            np.testing.assert_array_equal(a.toarray(), b.toarray())


def test_scipy_export_matches_the_dense_reference():
    X, y = blobs(50, 10, 3)
    model = sm.SparseMLP([10, 30, 20, 3], epsilon=4, activation="relu", seed=1)
    mats = model.to_scipy()
    assert [m.shape for m in mats] == [(10, 30), (30, 20), (20, 3)]
    assert sum(m.nnz for m in mats) == model.n_connections
    layers = dense_layers(model)
    for m, (W, _) in zip(mats, layers):
        np.testing.assert_array_equal(m.toarray(), W)


def test_import_from_scipy_computes_the_dense_math():
    rng = np.random.default_rng(0)
    weights = [sp.random(12, 20, density=0.3, format="coo", random_state=1) * 0.5,
               sp.random(20, 4, density=0.5, format="csc", random_state=2)]
    biases = [rng.normal(size=20), rng.normal(size=4)]
    model = sm.SparseMLP.from_scipy(weights, biases, activation=sm.LeakyReLU(0.1), seed=0)
    assert model.sizes == [12, 20, 4]
    assert model.n_connections == sum(w.nnz for w in weights)
    X = rng.normal(size=(30, 12)).astype(np.float32)
    y = rng.integers(0, 4, size=30)
    dense = [(w.toarray().astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
             for w, b in zip(weights, biases)]
    loss, _ = loss_and_grads(dense, [("leaky", 0.1)], X, y)
    assert model.evaluate(X, y)["loss"] == pytest.approx(loss, rel=1e-5)
    for exported, w in zip(model.to_scipy(), weights):
        np.testing.assert_array_equal(exported.toarray(), w.toarray().astype(np.float32))
    # It trains, keeps its topology size under SET, and saves like any model.
    model.fit(X, y, epochs=2, verbose=0)
    assert model.n_connections == sum(w.nnz for w in weights)


def test_import_from_scipy_rejects_bad_input():
    a = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    with pytest.raises(sm.InvalidInputError, match="at least one"):
        sm.SparseMLP.from_scipy([])
    with pytest.raises(sm.InvalidInputError, match="scipy sparse matrix"):
        sm.SparseMLP.from_scipy([a.toarray()])
    with pytest.raises(sm.InvalidInputError, match="has 5 rows"):
        sm.SparseMLP.from_scipy([a, sp.random(5, 2, density=0.5, format="csr")])
    with pytest.raises(sm.InvalidInputError, match="at least 2 output classes"):
        sm.SparseMLP.from_scipy([sp.random(5, 1, density=1.0, format="csr")])
    bad = a.copy()
    bad.data[0] = np.nan
    with pytest.raises(sm.InvalidInputError, match="NaN"):
        sm.SparseMLP.from_scipy([bad])
    with pytest.raises(sm.InvalidInputError, match="biases\\[0\\]"):
        sm.SparseMLP.from_scipy([a], [np.zeros(3)])


def test_the_estimators_schedules_and_stopping_follow_scikit_learn():
    X, y = blobs(300, 10, 3, seed=8)
    base = dict(hidden_layer_sizes=(24,), random_state=0)
    inv = SparseMLPClassifier(max_iter=3, learning_rate="invscaling", power_t=0.5, learning_rate_init=0.05,
                              batch_size=50, **base).fit(X, y)
    # scikit-learn's invscaling: eta0 / (samples seen + 1) ** power_t, per epoch
    assert [r["learning_rate"] for r in inv.history_] == pytest.approx(
        [0.05, 0.05 / 301 ** 0.5, 0.05 / 601 ** 0.5], rel=1e-6)
    adaptive = SparseMLPClassifier(max_iter=40, learning_rate="adaptive", tol=10.0, n_iter_no_change=40,
                                   **base).fit(X, y)
    rates = [r["learning_rate"] for r in adaptive.history_]
    # no epoch improves on the first by tol = 10: the rate is divided by 5 after every 2
    assert rates[:6] == pytest.approx([0.01, 0.01, 0.01, 0.002, 0.002, 0.0004])
    # without early_stopping, training stops when the training loss stalls for n_iter_no_change epochs
    stalled = SparseMLPClassifier(max_iter=50, tol=10.0, n_iter_no_change=3, **base).fit(X, y)
    assert stalled.n_iter_ == 4
    early = SparseMLPClassifier(max_iter=200, early_stopping=True, validation_fraction=0.2,
                                n_iter_no_change=5, solver="adam", **base).fit(X, y)
    assert early.n_iter_ < 200 and early.best_validation_score_ == max(
        r["val_accuracy"] for r in early.history_)
    with pytest.raises(ValueError, match="solver must be one of"):
        SparseMLPClassifier(solver="lbfgs", max_iter=1).fit(X, y)
