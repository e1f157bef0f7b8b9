"""Results must not depend on the number of threads."""

import numpy as np

import sparse_mlp as sm
from conftest import blobs


def train(threads, evolve=True):
    """Layer states and probabilities after a short training run; with
    `evolve=False` there are no topology changes, so the weights can be
    compared one by one between instruction sets that round differently."""
    sm.set_num_threads(threads)
    X, y = blobs(n=300, f=40, c=5, seed=7)
    model = sm.SparseMLP([40, 120, 80, 5], activation=sm.AllReLU(0.6), epsilon=6, dropout=0.3,
                         seed=11)
    if evolve:
        model.fit(X, y, epochs=8, batch_size=32, topology=sm.SET(0.3),
                  pruning=sm.ImportancePruning(start_epoch=4, every=2, percentile=10, shrink=True), verbose=0)
    else:
        model.fit(X, y, epochs=3, batch_size=32, verbose=0)
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
assert _core.simd_level() == {level!r}, _core.simd_level()
sys.path.insert(0, {tests!r})
import test_threads
states, proba = test_threads.train(2, evolve={evolve})
np.savez({out!r}, proba=proba, **{{f"{{i}}.{{k}}": s[k] for i, s in enumerate(states) for k in s
                                   if k not in ("n_in", "n_out")}})
"""


def run_with_simd(tmp_path, level, evolve):
    """Runs `train(2, evolve)` in a child process whose kernels use `level`."""
    import os
    import subprocess
    import sys

    out = tmp_path / f"{level}.npz"
    script = SIMD_SCRIPT.format(level=level, tests=os.path.dirname(__file__), out=str(out),
                                evolve=evolve)
    env = dict(os.environ, SPARSE_MLP_SIMD=level)
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=600)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_avx2_and_avx512_paths_give_identical_results(tmp_path, threads):
    """Both vector variants fuse multiply-adds and never reassociate, so they
    compute the same bits, topology evolution included."""
    import pytest

    from sparse_mlp import _core

    if not _core.simd_level().startswith("avx512"):
        pytest.skip("needs a CPU with AVX-512 to compare against AVX2")
    z = run_with_simd(tmp_path, "avx2", evolve=True)
    states, proba = train(2)
    np.testing.assert_array_equal(z["proba"], proba)
    for i, s in enumerate(states):
        for k in ("values", "row_idx", "momentum", "bias"):
            np.testing.assert_array_equal(z[f"{i}.{k}"], s[k])


def test_baseline_path_agrees_with_the_vector_path(tmp_path, threads):
    """The portable kernels (no FMA: products rounded separately) agree with
    the vector ones to float32 rounding."""
    from sparse_mlp import _core

    if _core.simd_level() == "baseline":
        import pytest

        pytest.skip("this CPU runs the baseline kernels already")
    z = run_with_simd(tmp_path, "baseline", evolve=False)
    states, proba = train(2, evolve=False)
    np.testing.assert_allclose(z["proba"], proba, rtol=1e-4, atol=1e-6)
    for i, s in enumerate(states):
        np.testing.assert_array_equal(z[f"{i}.row_idx"], s["row_idx"])
        for k in ("values", "momentum", "bias"):
            np.testing.assert_allclose(z[f"{i}.{k}"], s[k], rtol=1e-3, atol=1e-6,
                                       err_msg=f"layer {i} {k}")
