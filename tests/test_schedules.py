"""Learning-rate schedules: their values against the formulas, their rates
applied per step by the core, ReduceOnPlateau's state, and bad input."""

import math

import numpy as np
import pytest

import sparse_mlp as sm
from conftest import assert_same_training_state, blobs

S = sm.schedules


def test_cosine_values_follow_the_formula_step_by_step():
    s = S.Cosine(0.1, final=0.01, warmup_epochs=2)
    batches, epochs = 5, 10
    rates = np.concatenate([s.rates(e, batches, epochs, 100, {}) for e in range(1, epochs + 1)])
    total, warm = epochs * batches, 2 * batches
    for step, r in enumerate(rates):
        if step < warm:
            want = 0.1 * (step + 1) / warm
        else:
            p = (step - warm) / (total - warm)
            want = 0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * p))
        assert r == pytest.approx(want, rel=1e-6), step
    # total_epochs fixes the length whatever the fit call's epochs; beyond it, the final rate
    long = S.Cosine(0.1, total_epochs=4)
    assert long.rates(4, 1, 100, 10, {})[0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert long.rates(9, 1, 100, 10, {})[0] == pytest.approx(1e-12)


def test_step_invscaling_and_warmup_values():
    assert [float(S.Step(0.2, 0.5, every=3).rates(e, 2, 10, 10, {})[1]) for e in range(1, 8)] == \
        pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05])
    inv = S.InvScaling(0.1, power=0.5)  # scikit-learn: eta0 / (t + 1) ** power_t, t samples seen
    assert [float(inv.rates(e, 3, 10, 50, {})[0]) for e in (1, 2, 3)] == \
        pytest.approx([0.1, 0.1 / 51 ** 0.5, 0.1 / 101 ** 0.5])
    warm = S.Warmup(0.01, scale=4, epochs=2)  # WASSP-SGD's rule for 4 workers
    r = np.concatenate([warm.rates(e, 4, 5, 10, {}) for e in (1, 2, 3)])
    want = [0.01 * (1 + 3 * min(1.0, (k + 1) / 8)) for k in range(12)]
    assert r == pytest.approx(want, rel=1e-6)


def test_reduce_on_plateau_waits_patience_epochs_then_cuts_the_rate():
    s = S.ReduceOnPlateau(0.1, monitor="val_accuracy", factor=0.5, patience=2, cooldown=1, min_rate=0.02)
    state: dict = {}
    seen = []
    for acc in [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]:  # mode auto: accuracy is maximized
        seen.append(float(s.rates(1, 1, 10, 10, state)[0]))
        s.update(state, {"val_accuracy": acc})
    # (Keras's rule: no count during the cooldown epoch after a cut)
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025])
    for _ in range(10):
        s.update(state, {"val_accuracy": 0.1})
    assert state["rate"] == pytest.approx(0.02)  # never below min_rate
    with pytest.raises(sm.InvalidInputError, match="val_accuracy"):
        s.update({}, {"loss": 1.0})


def test_a_step_schedule_trains_like_fit_calls_at_each_rate():
    X, y = blobs(n=96, f=10, c=3, seed=1)

    def model():
        return sm.SparseMLP([10, 24, 3], epsilon=4, seed=2)

    scheduled = model()
    # (no SET: a fit call does not change the topology after its last epoch)
    history = scheduled.fit(X, y, epochs=4, batch_size=16, verbose=0, topology=None,
                            learning_rate=S.Step(0.04, factor=0.25, every=2))
    by_hand = model()
    by_hand.fit(X, y, epochs=2, batch_size=16, learning_rate=0.04, verbose=0, topology=None)
    # SGD's weight decay follows the schedule's multiplier (0.25 here, exact in
    # binary), so a fit call at the lower rate decays by a quarter as much
    by_hand.fit(X, y, epochs=2, batch_size=16, learning_rate=0.01, weight_decay=2e-4 / 4,
                verbose=0, topology=None)
    assert_same_training_state(scheduled, by_hand)
    assert [r["learning_rate"] for r in history] == pytest.approx([0.04, 0.04, 0.01, 0.01])


def test_a_constant_schedule_is_a_number():
    X, y = blobs(n=64, f=10, c=3, seed=1)
    a, b = (sm.SparseMLP([10, 24, 3], epsilon=4, seed=2) for _ in range(2))
    a.fit(X, y, epochs=2, learning_rate=0.02, verbose=0)
    b.fit(X, y, epochs=2, learning_rate=S.Constant(0.02), verbose=0)
    assert_same_training_state(a, b)


def test_plateau_on_a_real_run_lowers_the_rate_and_records_it():
    X, y = blobs(n=200, f=10, c=3, seed=4)
    model = sm.SparseMLP([10, 32, 3], epsilon=4, seed=0)
    history = model.fit(X[:150], y[:150], epochs=12, verbose=0, validation_data=(X[150:], y[150:]),
                        learning_rate=S.ReduceOnPlateau(0.05, monitor="val_loss", patience=1,
                                                        factor=0.5, min_delta=1.0))
    rates = [r["learning_rate"] for r in history]
    assert rates[0] == pytest.approx(0.05) and rates[-1] < rates[0]
    assert all(b <= a for a, b in zip(rates, rates[1:]))


@pytest.mark.parametrize("make, match", [
    (lambda: S.Cosine(0.1, final=0.2), "final"),
    (lambda: S.Cosine(-1), "initial"),
    (lambda: S.Step(0.1, factor=2.0), "factor"),
    (lambda: S.Step(0.1, every=0), "every"),
    (lambda: S.ReduceOnPlateau(0.1, patience=-1), "patience"),
    (lambda: S.ReduceOnPlateau(0.1, mode="up"), "mode"),
    (lambda: S.Warmup("fast"), "learning_rate must be"),
])
def test_bad_schedules_are_named_errors(make, match):
    with pytest.raises(sm.InvalidInputError, match=match):
        make()
