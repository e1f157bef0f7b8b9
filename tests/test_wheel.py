"""The README's route for users without Rust: ``scripts/build-wheel.sh``
builds a manylinux abi3 wheel that auditwheel accepts; installed with
``pip install --only-binary=:all:`` into a fresh virtual environment whose
PATH has no cargo or rustc, it imports, trains and runs the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(argv, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=1800, **kw)
    assert r.returncode == 0, f"{argv}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "SKIP_AARCH64": "1", "PYTHON": sys.executable}
    _run(["bash", "scripts/build-wheel.sh", str(out)], cwd=ROOT, env=env)
    return out


def test_the_wheel_is_manylinux_abi3_with_an_sdist(dist):
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [
        "sparse_mlp-0.1.0-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"]
    assert len(list(dist.glob("sparse_mlp-*.tar.gz"))) == 1
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
    assert "sparse_mlp/_core.abi3.so" in names and "sparse_mlp/cli/__init__.py" in names
    shown = _run([sys.executable, "-m", "auditwheel", "show", str(wheels[0])]).stdout
    assert 'consistent with the following platform tag:\n"manylinux_2_17_x86_64"' in shown


def test_the_wheel_installs_without_rust_and_trains(dist, tmp_path):
    wheel = next(dist.glob("*x86_64*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    # a PATH without any folder holding cargo or rustc (nor this checkout's venv)
    path = [p for p in os.environ["PATH"].split(os.pathsep)
            if p and not any(os.path.exists(os.path.join(p, tool)) for tool in ("cargo", "rustc"))
            and not p.startswith(os.path.join(ROOT, ".venv"))]
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    assert shutil.which("cargo", path=env["PATH"]) is None
    assert shutil.which("rustc", path=env["PATH"]) is None
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--only-binary=:all:", str(wheel)], env=env, cwd=tmp_path)
    script = (
        "import numpy as np, sparse_mlp as sm\n"
        f"assert sm.__file__.startswith({str(venv)!r})\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.standard_normal((400, 20), dtype=np.float32); y = (X[:, 0] > 0).astype(int)\n"
        "m = sm.SparseMLP([20, 64, 2], epsilon=8, seed=0)\n"
        "m.fit(X, y, epochs=15, verbose=0)\n"
        "print(m.score(X, y))\n")
    accuracy = float(_run([python, "-c", script], env=env, cwd=tmp_path).stdout.strip())
    assert accuracy > 0.8  # chance is 0.5
    cli = _run([str(venv / "bin" / "sparse-mlp"), "train", "--epochs", "1", "--hidden", "32",
                "--out", "run", "--quiet"], env=env, cwd=tmp_path)
    assert "test accuracy" in cli.stdout and (tmp_path / "run" / "model.npz").exists()
