"""Ctrl-C stops training between two mini-batches and leaves a usable model."""

import os
import signal
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import sparse_mlp as sm

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 300)).astype(np.float32)
    y = rng.integers(0, 10, size=20000)
    model = sm.SparseMLP([300, 2000, 2000, 10], epsilon=20, seed=0)

    def announce(m, record):
        print("EPOCH", record["epoch"], flush=True)

    try:
        model.fit(X, y, epochs=10_000, batch_size=32, verbose=0, callbacks=[announce])
    except KeyboardInterrupt:
        p = model.predict_proba(X[:10])
        assert np.isfinite(p).all()
        model.fit(X[:64], y[:64], epochs=1, batch_size=32, verbose=0)  # still trainable
        print("INTERRUPTED", flush=True)
        sys.exit(0)
    print("FINISHED", flush=True)
    sys.exit(1)
    """
)


def _default_sigint():
    # as a terminal's shell would: a suite started in the background (`cmd &`)
    # ignores SIGINT, children inherit that, and Python then installs no handler
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_stops_training_cleanly():
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=_default_sigint)
    try:
        first = proc.stdout.readline()
        assert first.startswith("EPOCH"), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # a hang guard, not a timing assertion
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "INTERRUPTED" in out
    assert "panicked" not in err


def test_progress_callback_sees_batches_and_its_exception_stops_the_epoch():
    import numpy as np
    import pytest

    import sparse_mlp as sm

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 300)).astype(np.float32)
    y = rng.integers(0, 10, size=20000)
    model = sm.SparseMLP([300, 2000, 2000, 10], epsilon=20, seed=0)
    seen = []

    def progress(done):
        seen.append(done)
        if done > 0:
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        model._net.train_epoch(X, y, 32, 0.01, 0.9, 0.0, progress=progress)
    batches_run = model._net.run_state[2]
    assert seen and 0 < batches_run < 20000 // 32  # stopped inside the epoch
    assert np.isfinite(model.predict_proba(X[:5])).all()
