#!/usr/bin/env bash
# Installs sparse_mlp with its test extras into .venv, then runs every check
# and test: formatting and lints, `cargo test` for the Rust core (and its
# kernels under Miri), `pytest` for the Python package. This is the README's
# test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet ".[test]"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test -p sparse-mlp-core --quiet
# The unsafe code (SIMD dispatch, prefetch, SSE reductions, the backward
# pass's disjoint gradient writes) under Miri on small cases, with the
# baseline kernels and again with the AVX2 ones. Needs nightly's miri.
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal --component miri,rust-src \
        || echo "WARNING: could not install Miri; the Miri checks are skipped"
fi
if cargo +nightly miri --version >/dev/null 2>&1; then
    export MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks"
    cargo +nightly miri test -p sparse-mlp-core --lib --quiet -- kernels:: simd::
    RUSTFLAGS="-C target-feature=+avx2,+fma" \
        cargo +nightly miri test -p sparse-mlp-core --lib --quiet -- kernels:: simd::
    unset MIRIFLAGS
fi
ruff check python tests benches
python -m pytest -q tests
# The stubs of the compiled module must match it.
python -m mypy.stubtest sparse_mlp._core
