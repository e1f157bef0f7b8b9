"""Results must not depend on the number of threads."""

import numpy as np

import sparse_mlp as sm
from conftest import blobs


def train(threads):
    sm.set_num_threads(threads)
    X, y = blobs(n=300, f=40, c=5, seed=7)
    model = sm.SparseMLP([40, 120, 80, 5], activation=sm.AllReLU(0.6), epsilon=6, dropout=0.3,
                         seed=11)
    model.fit(X, y, epochs=8, batch_size=32, topology=sm.SET(0.3),
              pruning=sm.ImportancePruning(start_epoch=4, every=2, percentile=10), verbose=0)
    return [model._net.layer_state(i) for i in range(len(model.sizes) - 1)], model.predict_proba(X)


def test_same_seed_gives_bit_identical_weights_on_1_2_and_3_threads(threads):
    one, p1 = train(1)
    for n in (2, 3):
        other, pn = train(n)
        for a, b in zip(one, other):
            for k in ("col_ptr", "row_idx", "values", "momentum", "bias", "bias_momentum"):
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} differs on {n} threads")
        np.testing.assert_array_equal(p1, pn)


def test_thread_count_is_settable(threads):
    sm.set_num_threads(3)
    assert sm.get_num_threads() == 3
    import pytest

    with pytest.raises(ValueError):
        sm.set_num_threads(0)


SIMD_SCRIPT = """
import numpy as np, sys
from sparse_mlp import _core
assert _core.simd_level() == "baseline", _core.simd_level()
sys.path.insert(0, {tests!r})
from test_threads import train
states, proba = train(2)
np.savez({out!r}, proba=proba, **{{f"{{i}}.{{k}}": s[k] for i, s in enumerate(states) for k in s
                                   if k not in ("n_in", "n_out")}})
"""


def test_baseline_and_vector_instruction_paths_give_identical_results(tmp_path, threads):
    """SPARSE_MLP_NO_SIMD forces the portable kernels; the AVX2/AVX-512 ones
    must compute the same bits (no reassociation anywhere)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "baseline.npz"
    script = SIMD_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out))
    env = dict(os.environ, SPARSE_MLP_NO_SIMD="1")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
    states, proba = train(2)
    with np.load(out) as z:
        np.testing.assert_array_equal(z["proba"], proba)
        for i, s in enumerate(states):
            for k in ("values", "row_idx", "momentum", "bias"):
                np.testing.assert_array_equal(z[f"{i}.{k}"], s[k])
